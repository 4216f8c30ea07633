"""The customer's billing statement: their invoices, newest first, each with its lines, the
credit notes it issued or used and the payments made for it (docs/billing.md, "The customer's
endpoints").

A page is bounded (``limit``) and continues from a cursor, the id of the last invoice of the
previous page: the order is ``(created_at, id)`` descending, so a page never repeats or skips an
invoice when a new one is issued meanwhile. Only the caller's own invoices are ever read: the
cursor too must be one of theirs.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import and_, or_, select

from ...billing_models import BillingCreditNote, BillingInvoice, BillingInvoiceLine, BillingPayment
from ...db import transaction
from ...errors import NotFound
from ..context import ServiceContext
from .invoices import lines_of


@dataclass(frozen=True)
class Statement:
    """One invoice with what belongs to it (rows read in one transaction, not to be changed)."""

    invoice: BillingInvoice
    lines: list[BillingInvoiceLine]
    credit_notes: list[BillingCreditNote]
    payments: list[BillingPayment]


@dataclass(frozen=True)
class StatementPage:
    statements: list[Statement]
    #: The cursor of the next (older) page; ``None``: this page is the last.
    next_before: str | None


class Statements:
    def __init__(self, ctx: ServiceContext) -> None:
        self._ctx = ctx

    def page(self, user_id: str, *, limit: int, before: str | None = None) -> StatementPage:
        """Up to ``limit`` of the user's invoices older than the invoice ``before`` (the newest
        when ``None``). A ``before`` that is not one of the user's invoices is a 404, the same
        whether it exists for someone else or not at all."""
        with transaction(self._ctx.read) as session:
            query = select(BillingInvoice).where(BillingInvoice.user_id == user_id)
            if before is not None:
                cursor = session.get(BillingInvoice, before)
                if cursor is None or cursor.user_id != user_id:
                    raise NotFound(f"this account has no invoice {before!r}")
                query = query.where(
                    or_(
                        BillingInvoice.created_at < cursor.created_at,
                        and_(
                            BillingInvoice.created_at == cursor.created_at,
                            BillingInvoice.id < cursor.id,
                        ),
                    )
                )
            newest_first = query.order_by(
                BillingInvoice.created_at.desc(), BillingInvoice.id.desc()
            )
            rows = list(session.scalars(newest_first.limit(limit + 1)))
            more = len(rows) > limit
            rows = rows[:limit]
            ids = [invoice.id for invoice in rows]
            notes = list(
                session.scalars(
                    select(BillingCreditNote)
                    .where(
                        or_(
                            BillingCreditNote.invoice_id.in_(ids),
                            BillingCreditNote.applied_invoice_id.in_(ids),
                        )
                    )
                    .order_by(BillingCreditNote.created_at, BillingCreditNote.id)
                )
            )
            payments = list(
                session.scalars(
                    select(BillingPayment)
                    .where(BillingPayment.invoice_id.in_(ids))
                    .order_by(BillingPayment.occurred_at, BillingPayment.id)
                )
            )
            statements = [
                Statement(
                    invoice=invoice,
                    lines=lines_of(session, invoice.id),
                    credit_notes=[
                        n for n in notes if invoice.id in (n.invoice_id, n.applied_invoice_id)
                    ],
                    payments=[p for p in payments if p.invoice_id == invoice.id],
                )
                for invoice in rows
            ]
        return StatementPage(statements, rows[-1].id if more and rows else None)
