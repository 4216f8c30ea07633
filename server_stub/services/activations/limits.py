"""The built-in activation limits (docs/licensing.md, "Limits"): per-hour counts from
``activation_events``, live activations, dead activations freed, and refusals recorded.

Everything here runs inside the caller's transaction, after the license row was locked
(``SELECT … FOR UPDATE`` on PostgreSQL; SQLite's ``BEGIN IMMEDIATE`` already serialises writers),
so two activations of one license can never both see a free slot.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Final, cast

from sqlalchemy import ColumnElement, Select, Table, bindparam, func, insert, select, update
from sqlalchemy.orm import Session

from ...errors import DomainError, RateLimited
from ...models import UTCDateTime
from ...portal_models import Activation, ActivationEvent, License
from .. import notifications
from ..audit import record

HOUR: Final = timedelta(hours=1)
#: ``activation_events.kind`` values that count towards ``activations_per_hour``.
NEW_MACHINE_KINDS: Final = ("activate", "replace")
CHECKOUT: Final = "checkout"
REFUSED: Final = "refused"
#: The actor of what the product API does on an installation's behalf, and of the sweeper.
INSTALLATION_ACTOR: Final = "installation"
CLOCK_ACTOR: Final = "clock"
#: ``activations.ip`` and ``activation_events.ip`` hold this much (an IPv6 address's text).
IP_CHARS: Final = 45


def activation_object(license_id: str, activation_id: str) -> str:
    """The audit log's object path of one activation."""
    return f"license/{license_id}/activation/{activation_id}"


def add_event(
    session: Session, license_id: str, kind: str, ip: str, now: datetime, detail: str | None = None
) -> None:
    session.add(
        ActivationEvent(
            license_id=license_id,
            kind=kind,
            at=now,
            ip=ip,
            detail=None if detail is None else detail[:200],
        )
    )


def add_events(session: Session, license_id: str, kinds: list[str], ip: str, now: datetime) -> None:
    """Write the events ``kinds`` of one request at once: one Core statement, no unit of work
    (nothing reads their ids)."""
    session.execute(
        _INSERT_EVENT,
        [{"license_id": license_id, "kind": k, "at": now, "ip": ip, "detail": None} for k in kinds],
    )


#: The per-hour limits: the event kinds counted, the license column, and the refusal's words.
PER_HOUR: Final = {
    "checkouts": ((CHECKOUT,), "checkouts_per_hour", "license file downloads"),
    "new_machines": (NEW_MACHINE_KINDS, "activations_per_hour", "activations of new machines"),
}


def check_per_hour(session: Session, license_row: License, which: str, now: datetime) -> None:
    """Raise :class:`RateLimited` (with ``Retry-After``) when the license's ``which`` limit
    (:data:`PER_HOUR`) was reached in the last hour."""
    kinds, column, what = PER_HOUR[which]
    limit: int | None = getattr(license_row, column)
    if limit is None:
        return
    count, oldest = session.execute(
        select(func.count(), func.min(ActivationEvent.at)).where(
            ActivationEvent.license_id == license_row.id,
            ActivationEvent.kind.in_(kinds),
            ActivationEvent.at > now - HOUR,
        )
    ).one()
    if count < limit:
        return
    wait = 1 if oldest is None else max(1, math.ceil((oldest + HOUR - now).total_seconds()))
    raise RateLimited(
        f"the license allows {limit} {what} per hour; try again in {wait} s",
        headers={"Retry-After": str(wait)},
    )


def live_count(session: Session, license_id: str) -> int:
    return int(
        session.scalar(
            select(func.count()).where(
                Activation.license_id == license_id, Activation.deactivated_at.is_(None)
            )
        )
        or 0
    )


def _dead(*conditions: ColumnElement[bool]) -> Select[str, str]:
    return (
        select(Activation.license_id, Activation.id)
        .where(
            Activation.deactivated_at.is_(None),
            Activation.last_heartbeat_at < bindparam("cutoff", type_=UTCDateTime()),
            *conditions,
        )
        .order_by(Activation.last_heartbeat_at)
        .limit(500)
        .with_for_update()
    )


# Built once: every activation runs one, and building a statement costs more than running it.
_DEAD_OF_LICENSES: Final = _dead(Activation.license_id.in_(bindparam("ids", expanding=True)))
_DEAD_OF_WINDOW: Final = _dead(
    Activation.license_id.in_(
        select(License.id).where(License.heartbeat_window_s == bindparam("window_s"))
    )
)
_INSERT_EVENT: Final = insert(cast(Table, ActivationEvent.__table__))


def free_dead(
    session: Session, now: datetime, license_ids: Iterable[str] | None, window_s: int
) -> list[tuple[str, str]]:
    """Deactivate (``dead``) the live activations without a heartbeat for ``window_s``, of
    ``license_ids`` (None: of every license with that window); returns (license, activation) ids.
    """
    cutoff = now - timedelta(seconds=window_s)
    if license_ids is None:
        found = session.execute(_DEAD_OF_WINDOW, {"cutoff": cutoff, "window_s": window_s})
    else:
        found = session.execute(_DEAD_OF_LICENSES, {"cutoff": cutoff, "ids": tuple(license_ids)})
    rows = found.all()
    if not rows:
        return []
    session.execute(
        update(Activation)
        .where(Activation.id.in_([r[1] for r in rows]), Activation.deactivated_at.is_(None))
        .values(deactivated_at=now, deactivated_reason="dead")
    )
    for license_id, activation_id in rows:
        record(
            session,
            now,
            CLOCK_ACTOR,
            "activation.dead",
            activation_object(license_id, activation_id),
            {"window_s": window_s},
        )
    return [(r[0], r[1]) for r in rows]


def record_refusal(
    session: Session, license_row: License, error: DomainError, ip: str, now: datetime
) -> None:
    """Keep a refusal by a limit as a ``refused`` event and announce it once per license an
    hour (the notification outbox deduplicates on ``<license id>:<hour>``)."""
    add_event(session, license_row.id, REFUSED, ip, now, f"{error.code.value}: {error.detail}")
    hour = now.strftime("%Y-%m-%dT%H")
    notifications.enqueue(
        session,
        kind="limit_exceeded",
        license_id=license_row.id,
        dedupe=f"{license_row.id}:{hour}",
        payload={
            "code": error.code.value,
            "detail": error.detail,
            "ip": ip,
        },
        now=now,
    )
