"""The wallet's history: its transactions newest first, filtered by kind and time, a page at a
time. The cursor is opaque to clients (the last entry's time and id, base64): a page never
repeats or skips an entry when new ones are booked meanwhile, because newer ones sort before it.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from ...errors import ValidationFailed
from ...points_models import PointsTransaction
from .views import Entry, entry_of

MAX_PAGE = 200


def wallet_object(user_id: str) -> str:
    """The audit log's object path of a user's wallet."""
    return f"points/wallets/{user_id}"


@dataclass(frozen=True)
class HistoryPage:
    entries: list[Entry]
    next_cursor: str | None


def encode_cursor(entry: Entry) -> str:
    raw = f"{entry.created_at.isoformat()}|{entry.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        at, entry_id = raw.split("|", 1)
        when = datetime.fromisoformat(at)
    except (ValueError, UnicodeDecodeError, binascii.Error) as exc:
        raise ValidationFailed("the cursor is not one this server gave out") from exc
    if when.tzinfo is None or not entry_id:
        raise ValidationFailed("the cursor is not one this server gave out")
    return when, entry_id


def history_page(
    session: Session,
    user_id: str,
    limit: int,
    cursor: str | None,
    kinds: frozenset[str],
    since: datetime | None,
    until: datetime | None,
) -> HistoryPage:
    if not 1 <= limit <= MAX_PAGE:
        raise ValidationFailed(f"limit must be between 1 and {MAX_PAGE}")
    tx = PointsTransaction
    query = select(tx).where(tx.user_id == user_id)
    if kinds:
        query = query.where(tx.kind.in_(sorted(kinds)))
    if since is not None:
        query = query.where(tx.created_at >= since)
    if until is not None:
        query = query.where(tx.created_at < until)
    if cursor is not None:
        at, entry_id = decode_cursor(cursor)
        query = query.where(or_(tx.created_at < at, and_(tx.created_at == at, tx.id < entry_id)))
    rows = session.scalars(
        query.order_by(tx.created_at.desc(), tx.id.desc()).limit(limit + 1)
    ).all()
    entries = [entry_of(row) for row in rows[:limit]]
    more = len(rows) > limit
    return HistoryPage(entries, encode_cursor(entries[-1]) if more and entries else None)
