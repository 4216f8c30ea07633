"""What staff read about payments: a filtered, cursor-paginated list and the same as a table."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Select, and_, or_, select
from sqlalchemy.orm import Session

from ...errors import ValidationFailed
from ...portal_models import Contract, Payment
from .timestamps import utc_text

MAX_PAGE = 200
#: An export of more payments than this asks for narrower filters (built in memory).
MAX_EXPORT_ROWS = 100_000
EXPORT_COLUMNS = (
    "id",
    "source",
    "external_id",
    "contract_number",
    "contract_id",
    "client_id",
    "amount_minor",
    "currency",
    "paid_at",
    "received_at",
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICRO = timedelta(microseconds=1)
#: The cursor's whole form (also the router's query pattern, so no other text reaches here).
CURSOR_PATTERN = r"^([0-9]{1,17})\.([0-9a-f-]{36})$"


@dataclass(frozen=True)
class PaymentFilter:
    contract_id: str | None = None
    client_id: str | None = None
    source: str | None = None
    #: ``paid_at`` from (inclusive) and until (exclusive).
    since: datetime | None = None
    until: datetime | None = None


@dataclass(frozen=True)
class PaymentRow:
    payment: Payment
    contract_number: str
    client_id: str

    def cells(self) -> list[str | int | None]:
        p = self.payment
        return [
            p.id,
            p.source,
            p.external_id,
            self.contract_number,
            p.contract_id,
            self.client_id,
            p.amount_minor,
            p.currency,
            utc_text(p.paid_at),
            utc_text(p.received_at),
        ]


@dataclass(frozen=True)
class PaymentPage:
    rows: list[PaymentRow]
    next_cursor: str | None


def encode_cursor(payment: Payment) -> str:
    """``<paid_at in µs since 1970>.<id>``: where the next page starts (newest first)."""
    # Integer arithmetic: a float timestamp would round the microseconds the order relies on.
    # ``paid_at`` is never before 2000 (the checks refuse it), so this is never negative.
    return f"{(payment.paid_at - _EPOCH) // _MICRO}.{payment.id}"


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    match = re.fullmatch(CURSOR_PATTERN, cursor)
    if match is None:
        raise ValidationFailed(
            "the cursor is not one this server gave",
            errors=[{"loc": ["query", "cursor"], "msg": "unknown cursor", "type": "value_error"}],
        )
    # 17 digits of µs reach the year 5138: within datetime's range, whatever the digits.
    return _EPOCH + int(match[1]) * _MICRO, match[2]


def _query(filters: PaymentFilter) -> Select[Payment, str, str]:
    query = select(Payment, Contract.number, Contract.client_id).join(
        Contract, Contract.id == Payment.contract_id
    )
    if filters.contract_id is not None:
        query = query.where(Payment.contract_id == filters.contract_id)
    if filters.client_id is not None:
        query = query.where(Contract.client_id == filters.client_id)
    if filters.source is not None:
        query = query.where(Payment.source == filters.source)
    if filters.since is not None:
        query = query.where(Payment.paid_at >= filters.since)
    if filters.until is not None:
        query = query.where(Payment.paid_at < filters.until)
    return query.order_by(Payment.paid_at.desc(), Payment.id.desc())


def page(session: Session, filters: PaymentFilter, cursor: str | None, limit: int) -> PaymentPage:
    """Newest payment first; ``cursor`` continues after the last one of the previous page."""
    query = _query(filters)
    if cursor is not None:
        when, last_id = decode_cursor(cursor)
        query = query.where(
            or_(Payment.paid_at < when, and_(Payment.paid_at == when, Payment.id < last_id))
        )
    found = [PaymentRow(*row) for row in session.execute(query.limit(limit + 1))]
    more = len(found) > limit
    rows = found[:limit]
    return PaymentPage(rows, encode_cursor(rows[-1].payment) if more else None)


def export_rows(session: Session, filters: PaymentFilter) -> Iterator[list[str | int | None]]:
    found = session.execute(_query(filters).limit(MAX_EXPORT_ROWS + 1)).all()
    if len(found) > MAX_EXPORT_ROWS:
        raise ValidationFailed(
            f"more than {MAX_EXPORT_ROWS} payments match: narrow the filters (since, until)"
        )
    return (PaymentRow(*row).cells() for row in found)
