"""Notifications of license events (seed 003, 3.3.5): written to the ``notifications`` outbox in
the transaction of the event, delivered later to SMTP, a webhook (generic or Slack-style) and the
Telegram Bot API.

:func:`enqueue` is the one entry point for the services that detect an event (revocation, a limit
exceeded, the expiry scan): one row per configured channel, deduplicated by ``dedupe`` so the same
event is never announced twice on a channel.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

from sqlalchemy import select
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
)
#: ``portal_settings`` key: ``{"channels": ["smtp", "webhook", "telegram"], ...}``.
SETTING_KEY: Final = "notifications"


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
    added = 0
    for channel in configured_channels(session):
        key = dedupe_key(kind, dedupe, channel)
        if session.scalar(select(Notification.seq).where(Notification.dedupe_key == key)):
            continue
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
            added += 1
        except IntegrityError:
            continue  # a concurrent scan added it first
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
]
