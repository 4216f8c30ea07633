"""Invoices and their lines: what the customer owes and sees.

An invoice's ``total_minor`` is the sum of its lines: a ``charge`` for a period, and the two
halves of a proration (``proration_charge`` for the rest of a period on the new plan, a
negative ``proration_credit`` for the unused rest of the old). ``amount_due_minor`` is what a
provider is asked to charge: the total less the credit applied, never below zero; a credit
beyond the total becomes a credit note (``billing_credit_notes``) for the next invoice or a
refund. The proration module (another step) builds its lines with :func:`add_line`.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from ...billing_models import LINE_KINDS, BillingCreditNote, BillingInvoice, BillingInvoiceLine
from ...errors import ValidationFailed


def new_invoice(
    session: Session,
    *,
    subscription_id: str,
    user_id: str,
    currency: str,
    period_start: datetime,
    period_end: datetime,
    now: datetime,
) -> BillingInvoice:
    """An empty open invoice for a period; lines are added with :func:`add_line`."""
    invoice = BillingInvoice(
        subscription_id=subscription_id,
        user_id=user_id,
        status="open",
        currency=currency,
        total_minor=0,
        credit_applied_minor=0,
        amount_due_minor=0,
        amount_paid_minor=0,
        period_start=period_start,
        period_end=period_end,
        created_at=now,
    )
    session.add(invoice)
    session.flush()
    return invoice


def add_line(
    session: Session,
    invoice: BillingInvoice,
    *,
    kind: str,
    amount_minor: int,
    description: str,
    period_start: datetime,
    period_end: datetime,
    plan_id: str | None,
    now: datetime,
) -> BillingInvoiceLine:
    """Add a line and bring the invoice's totals up to date. A credit is negative; a credit
    beyond the invoice's charges is issued as a credit note rather than a negative amount due."""
    if kind not in LINE_KINDS:
        raise ValidationFailed(f"unknown invoice line kind {kind!r}")
    if invoice.status not in ("draft", "open"):
        raise ValidationFailed(f"the invoice is {invoice.status}: its lines are final")
    if (kind == "proration_credit") != (amount_minor < 0) and amount_minor != 0:
        raise ValidationFailed("a credit line is negative, a charge line is not")
    line = BillingInvoiceLine(
        invoice_id=invoice.id,
        kind=kind,
        amount_minor=amount_minor,
        currency=invoice.currency,
        plan_id=plan_id,
        period_start=period_start,
        period_end=period_end,
        description=description[:300],
    )
    session.add(line)
    session.flush()
    _retotal(session, invoice, now)
    return line


def _retotal(session: Session, invoice: BillingInvoice, now: datetime) -> None:
    total = sum(
        session.scalars(
            select(BillingInvoiceLine.amount_minor).where(
                BillingInvoiceLine.invoice_id == invoice.id
            )
        )
    )
    invoice.total_minor = total
    invoice.amount_due_minor = max(total - invoice.credit_applied_minor, 0)
    excess = invoice.credit_applied_minor - total
    note = session.scalar(
        select(BillingCreditNote).where(
            BillingCreditNote.invoice_id == invoice.id, BillingCreditNote.status == "issued"
        )
    )
    if excess > 0:
        amount = excess
        if note is None:
            session.add(
                BillingCreditNote(
                    subscription_id=invoice.subscription_id,
                    invoice_id=invoice.id,
                    amount_minor=amount,
                    currency=invoice.currency,
                    reason="credit beyond the invoice's charges",
                    status="issued",
                    created_at=now,
                )
            )
        else:
            note.amount_minor = amount
    elif note is not None:
        note.status = "void"
    session.flush()


def apply_credit(session: Session, invoice: BillingInvoice, now: datetime) -> int:
    """Take the subscription's issued credit notes (oldest first, same currency) off an open
    invoice, up to what it still charges; returns the credit applied. A note used in part is
    split: the used part is applied to this invoice, the rest is a new issued note, so a note
    keeps one amount and one fate."""
    room = invoice.total_minor - invoice.credit_applied_minor
    used = 0
    notes = session.scalars(
        select(BillingCreditNote)
        .where(
            BillingCreditNote.subscription_id == invoice.subscription_id,
            BillingCreditNote.status == "issued",
            BillingCreditNote.applied_invoice_id.is_(None),
            BillingCreditNote.currency == invoice.currency,
            or_(BillingCreditNote.invoice_id.is_(None), BillingCreditNote.invoice_id != invoice.id),
        )
        .order_by(BillingCreditNote.created_at, BillingCreditNote.id)
    )
    for note in list(notes):
        if room <= 0:
            break
        part = min(note.amount_minor, room)
        if part < note.amount_minor:
            session.add(
                BillingCreditNote(
                    subscription_id=note.subscription_id,
                    invoice_id=note.invoice_id,
                    amount_minor=note.amount_minor - part,
                    currency=note.currency,
                    reason=f"rest of credit note {note.id}"[:300],
                    status="issued",
                    created_at=now,
                )
            )
            note.amount_minor = part
        note.status = "applied"
        note.applied_invoice_id = invoice.id
        room -= part
        used += part
    if used:
        invoice.credit_applied_minor += used
        _retotal(session, invoice, now)
    return used


def lines_of(session: Session, invoice_id: str) -> list[BillingInvoiceLine]:
    return list(
        session.scalars(
            select(BillingInvoiceLine)
            .where(BillingInvoiceLine.invoice_id == invoice_id)
            .order_by(BillingInvoiceLine.period_start, BillingInvoiceLine.id)
        )
    )


def void_open_invoices(session: Session, subscription_id: str, now: datetime) -> int:
    """Void what the subscription still owes (it will not be collected any more)."""
    invoices = list(
        session.scalars(
            select(BillingInvoice).where(
                BillingInvoice.subscription_id == subscription_id,
                BillingInvoice.status.in_(("draft", "open")),
            )
        )
    )
    for invoice in invoices:
        invoice.status = "void"
        invoice.voided_at = now
    return len(invoices)
