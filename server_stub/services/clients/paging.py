"""Cursor pagination of the portal's lists: newest first, keyset on (sort key, id).

A cursor is opaque to the caller: base64url of a small JSON array holding the last row's sort
key and id, and a digest of the list's filters, so a cursor is only taken back by the query that
made it. Anything that does not decode into exactly that is refused with 422, never a 500. A
cursor crafted by hand that does decode is only a position in the list: it reveals and unlocks
nothing.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Final, Generic, TypeVar

from sqlalchemy import Select, and_, or_
from sqlalchemy.orm import InstrumentedAttribute

from ...errors import ValidationFailed

T = TypeVar("T")
MAX_LIMIT: Final = 200
DEFAULT_LIMIT: Final = 50
MAX_CURSOR_LENGTH: Final = 512
_BAD_CURSOR = "not a cursor this list returned (start again without one)"


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    #: Pass as ``cursor`` for the next page; ``None`` on the last page.
    next_cursor: str | None


def _bad_cursor(message: str = _BAD_CURSOR) -> ValidationFailed:
    return ValidationFailed(
        f"cursor: {message}",
        errors=[{"loc": ["query", "cursor"], "msg": message, "type": "cursor"}],
    )


def filters_digest(filters: dict[str, Any]) -> str:
    text = json.dumps(filters, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def encode_cursor(key: datetime | date, row_id: str, digest: str) -> str:
    raw = json.dumps([key.isoformat(), row_id, digest], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(
    cursor: str, digest: str, parse: Callable[[str], datetime | date]
) -> tuple[datetime | date, str]:
    """The (sort key, id) a cursor holds; 422 unless it was made for this very query."""
    if len(cursor) > MAX_CURSOR_LENGTH:
        raise _bad_cursor()
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        value = json.loads(raw.decode("utf-8"))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise _bad_cursor() from None
    if (
        not isinstance(value, list)
        or len(value) != 3
        or not all(isinstance(v, str) for v in value)
        or len(value[1]) > 64
    ):
        raise _bad_cursor()
    if value[2] != digest:
        raise _bad_cursor("it belongs to a list with other filters")
    try:
        key = parse(value[0])
    except (ValueError, OverflowError):
        raise _bad_cursor() from None
    if isinstance(key, datetime) and key.tzinfo is None:
        raise _bad_cursor()
    return key, value[1]


def parse_datetime(text: str) -> datetime:
    return datetime.fromisoformat(text)


def parse_date(text: str) -> date:
    if len(text) != 10:
        raise ValueError(text)
    return date.fromisoformat(text)


def keyset_page(
    query: Select[Any],
    key_column: InstrumentedAttribute[Any],
    id_column: InstrumentedAttribute[str],
    *,
    cursor: str | None,
    limit: int,
    filters: dict[str, Any],
    fetch: Callable[[Select[Any]], Sequence[T]],
    key_of: Callable[[T], datetime | date],
    id_of: Callable[[T], str],
    by_date: bool = False,
) -> Page[T]:
    """One page of ``query`` ordered newest first by (``key_column``, ``id_column``)."""
    if not 1 <= limit <= MAX_LIMIT:
        raise ValidationFailed(f"limit: between 1 and {MAX_LIMIT}")
    digest = filters_digest(filters)
    if cursor is not None:
        key, last_id = decode_cursor(cursor, digest, parse_date if by_date else parse_datetime)
        query = query.where(or_(key_column < key, and_(key_column == key, id_column < last_id)))
    query = query.order_by(key_column.desc(), id_column.desc()).limit(limit + 1)
    rows = list(fetch(query))
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = encode_cursor(key_of(rows[-1]), id_of(rows[-1]), digest) if more else None
    return Page(rows, next_cursor)
