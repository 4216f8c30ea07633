"""Anonymous desktop telemetry: storing events once, dropping what may be personal, retention.

Events carry no user, device or client address, and none is stored (a bearer token, if sent, is
not even looked at). ``event_id`` is the idempotency key: a re-sent event is counted as a
duplicate and not stored again, also when two copies arrive at the same moment, because the
insert is ``INSERT … ON CONFLICT (event_id) DO NOTHING`` on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, Insert, delete
from sqlalchemy.dialects import postgresql, sqlite

from agent.protocol import TelemetryEvent, telemetry_key_denied

from ..db import transaction
from ..models import TelemetryEvent as StoredEvent
from .context import ServiceContext

log = logging.getLogger("tgflow.server.telemetry")


@dataclass(frozen=True)
class TelemetryResult:
    accepted: int
    duplicates: int


def _insert_ignoring_duplicates(dialect: str, rows: list[dict[str, Any]]) -> Insert:
    """``INSERT … ON CONFLICT (event_id) DO NOTHING RETURNING event_id``: only new rows return."""
    key = [StoredEvent.event_id]
    if dialect == "postgresql":
        pg = postgresql.insert(StoredEvent).values(rows)
        return pg.on_conflict_do_nothing(index_elements=key).returning(StoredEvent.event_id)
    lite = sqlite.insert(StoredEvent).values(rows)
    return lite.on_conflict_do_nothing(index_elements=key).returning(StoredEvent.event_id)


class TelemetryService:
    def __init__(self, ctx: ServiceContext) -> None:
        self._ctx = ctx

    def record(self, events: Sequence[TelemetryEvent]) -> TelemetryResult:
        """Store the events not stored before; returns how many were new and how many were not."""
        now = self._ctx.clock.now()
        rows: dict[str, dict[str, Any]] = {}
        for event in events:
            if event.event_id in rows:
                continue
            rows[event.event_id] = {
                "event_id": event.event_id,
                "name": event.name,
                "occurred_at": event.occurred_at,
                "received_at": now,
                "app_version": event.app_version,
                "install_id": event.install_id,
                # The desktop already drops these; a client that does not is not trusted to.
                "properties": {
                    k: v for k, v in event.properties.items() if not telemetry_key_denied(k)
                },
            }
        with transaction(self._ctx.write) as session:
            stmt = _insert_ignoring_duplicates(self._ctx.engine.dialect.name, list(rows.values()))
            accepted = len(session.execute(stmt).all())
        return TelemetryResult(accepted=accepted, duplicates=len(events) - accepted)

    def purge_expired(self) -> int:
        """Delete the events received more than ``telemetry_retention_days`` ago."""
        days = self._ctx.settings.telemetry_retention_days
        cutoff = self._ctx.clock.now() - timedelta(days=days)
        with transaction(self._ctx.write) as session:
            result = session.execute(delete(StoredEvent).where(StoredEvent.received_at < cutoff))
            deleted = cast(CursorResult[Any], result).rowcount
        if deleted:
            log.info("deleted expired telemetry events", extra={"count": deleted})
        return deleted
