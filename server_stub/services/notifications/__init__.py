"""Notifications of license events (seed 003, 3.3.5): written to the ``notifications`` outbox in
the transaction of the event, delivered later to SMTP, a webhook (generic or Slack-style) and the
Telegram Bot API.

:func:`enqueue` is the one entry point for the services that detect an event (revocation, a limit
exceeded, the expiry scan): one row per configured channel, deduplicated by ``dedupe`` so the same
event is never announced twice on a channel.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ...portal_models import NOTIFICATION_CHANNELS, Notification, PortalSetting

#: The events announced.
KINDS: Final = (
    "expiring_30",
    "expiring_7",
    "expiring_1",
    "expired",
    "limit_exceeded",
    "revoked",
    # Billing's dunning (docs/billing.md, "Renewals and dunning"): e-mailed to the customer.
    "billing_renewed",
    "billing_renewal_failed",
    "billing_final_notice",
    "billing_ended",
)
#: The kinds addressed to the customer (``payload["to"]``), by e-mail only.
USER_KINDS: Final = frozenset(k for k in KINDS if k.startswith("billing_"))
#: ``portal_settings`` key: ``{"channels": ["smtp", "webhook", "telegram"], ...}``.
SETTING_KEY: Final = "notifications"
#: Rows per multi-row INSERT of :func:`enqueue_many`.
_CHUNK: Final = 400


def dedupe_key(kind: str, dedupe: str, channel: str) -> str:
    """The outbox row's unique key of ``kind`` for the occurrence ``dedupe`` on ``channel``."""
    return f"{kind}:{dedupe}:{channel}"[:200]


def configured_channels(session: Session) -> list[str]:
    """The channels notifications go to (none configured: nothing is enqueued)."""
    row = session.get(PortalSetting, SETTING_KEY)
    value = row.value if row is not None and isinstance(row.value, dict) else {}
    channels = value.get("channels", [])
    if not isinstance(channels, list):
        return []
    return [c for c in NOTIFICATION_CHANNELS if c in channels]


def enqueue(
    session: Session,
    *,
    kind: str,
    license_id: str | None,
    dedupe: str,
    payload: dict[str, Any],
    now: datetime,
) -> int:
    """Add ``kind`` for each configured channel unless already there; returns how many were added.

    ``dedupe`` names the occurrence (``<license id>:<valid_until>`` for an expiry warning,
    ``<license id>`` for a revocation), so re-running a scan adds nothing.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown notification kind {kind!r}")
    return sum(
        _add_once(session, kind, dedupe, channel, license_id, payload, now)
        for channel in configured_channels(session)
    )


def _add_once(
    session: Session,
    kind: str,
    dedupe: str,
    channel: str,
    license_id: str | None,
    payload: dict[str, Any],
    now: datetime,
) -> bool:
    """One outbox row unless this occurrence is there already; whether it was added."""
    key = dedupe_key(kind, dedupe, channel)
    if session.scalar(select(Notification.seq).where(Notification.dedupe_key == key)):
        return False
    try:
        with session.begin_nested():
            session.add(
                Notification(
                    dedupe_key=key,
                    kind=kind,
                    channel=channel,
                    license_id=license_id,
                    payload=payload,
                    created_at=now,
                    attempts=0,
                    next_attempt_at=now,
                )
            )
    except IntegrityError:
        return False  # a concurrent writer added it first
    return True


def enqueue_to_user(
    session: Session, *, kind: str, to: str, dedupe: str, payload: dict[str, Any], now: datetime
) -> bool:
    """One e-mail of ``kind`` to the customer at ``to`` (the SMTP channel's row with the address
    in its payload), unless this occurrence (``dedupe``) was enqueued before. Returns whether it
    was added."""
    if kind not in USER_KINDS:
        raise ValueError(f"{kind!r} is not addressed to a customer")
    return _add_once(session, kind, dedupe, "smtp", None, {**payload, "to": to}, now)


def enqueue_many(
    session: Session, events: Sequence[tuple[str, str | None, str, dict[str, Any]]], now: datetime
) -> int:
    """:func:`enqueue` for many ``(kind, license_id, dedupe, payload)`` at once (the expiry
    scan): one ``INSERT … ON CONFLICT DO NOTHING`` per chunk instead of a query and a savepoint
    per row. Returns how many rows were added."""
    channels = configured_channels(session)
    rows = [
        {
            "dedupe_key": dedupe_key(kind, dedupe, channel),
            "kind": kind,
            "channel": channel,
            "license_id": license_id,
            "payload": payload,
            "created_at": now,
            "attempts": 0,
            "next_attempt_at": now,
        }
        for kind, license_id, dedupe, payload in events
        for channel in channels
    ]
    if any(kind not in KINDS for kind, *_ in events):
        raise ValueError("unknown notification kind")
    dialect_insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    added = 0
    for start in range(0, len(rows), _CHUNK):
        statement = (
            dialect_insert(Notification)
            .values(rows[start : start + _CHUNK])
            .on_conflict_do_nothing(index_elements=["dedupe_key"])
            .returning(Notification.seq)
        )
        # Counted from RETURNING: a driver's rowcount of a multi-row INSERT is not portable.
        added += len(session.scalars(statement).all())
    return added


# Last: the service's modules import the names above.
from .service import NotificationService  # noqa: E402

__all__ = [
    "KINDS",
    "SETTING_KEY",
    "NotificationService",
    "configured_channels",
    "dedupe_key",
    "enqueue",
    "enqueue_many",
]
