"""The expiry scan: warnings 30, 7 and 1 days before a license ends, and the notice that it has.

Run by the sweeper. A license is announced once per (kind, license, ``valid_until``): the outbox's
``dedupe_key`` holds all three, so a scan run again adds nothing, while a renewal (a new
``valid_until``) arms every warning again. Only the nearest threshold a license has crossed is
announced: a license found 5 days before its end gets the 7-day warning, not the 30-day one too.
An ``expired`` notice goes out for licenses that ended within :data:`EXPIRED_LOOKBACK`, so that
turning notifications on does not announce every license that lapsed years ago.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from ...portal_models import License, Notification
from . import configured_channels, dedupe_key, enqueue_many

#: Days before ``valid_until`` that each warning is due, nearest first.
THRESHOLDS: Final = (1, 7, 30)
EXPIRED_LOOKBACK: Final = timedelta(days=30)
#: Keys looked up per query when the scan checks what is already in the outbox.
_CHUNK = 500


def due_kind(valid_until: datetime, now: datetime) -> str | None:
    """The notice a license ending at ``valid_until`` is due at ``now`` (None: none yet)."""
    if valid_until <= now:
        return "expired" if valid_until > now - EXPIRED_LOOKBACK else None
    for days in THRESHOLDS:
        if valid_until <= now + timedelta(days=days):
            return f"expiring_{days}"
    return None


def scan(session: Session, now: datetime) -> int:
    """Enqueue what is due in the caller's transaction; returns how many rows were added."""
    channels = configured_channels(session)
    if not channels:
        return 0
    rows = session.execute(
        select(License.id, License.valid_until).where(
            License.status == "active",
            License.valid_until > now - EXPIRED_LOOKBACK,
            License.valid_until <= now + timedelta(days=max(THRESHOLDS)),
        )
    ).all()
    due: list[tuple[str, str, str, datetime]] = []
    for license_id, valid_until in rows:
        kind = due_kind(valid_until, now)
        if kind is not None:
            due.append((kind, license_id, f"{license_id}:{valid_until.isoformat()}", valid_until))
    # One query per chunk finds what is already announced, so a quiet scan costs few queries.
    keys = [dedupe_key(kind, dedupe, c) for kind, _, dedupe, _ in due for c in channels]
    present: set[str] = set()
    for start in range(0, len(keys), _CHUNK):
        chunk = keys[start : start + _CHUNK]
        present.update(
            session.scalars(
                select(Notification.dedupe_key).where(Notification.dedupe_key.in_(chunk))
            )
        )
    missing = [
        (kind, license_id, dedupe, {"valid_until": valid_until.isoformat()})
        for kind, license_id, dedupe, valid_until in due
        if not all(dedupe_key(kind, dedupe, c) in present for c in channels)
    ]
    return enqueue_many(session, missing, now)
