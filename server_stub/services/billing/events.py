"""Applying normalized provider events (contract.ProviderEvent) to subscriptions, invoices and
payments; and CloudPayments' synchronous Check of an invoice.

Each event is applied once: by its ``(provider, event_id)`` (``billing_applied_events`` keeps
what came of it) and by the payment it reports (``(provider, payment_ref)`` is unique), so the
webhook and the reconciler may both deliver one payment. Events apply in the provider's time:
one older than the newest applied to its subscription is stored (and its payment recorded) but
moves nothing (``stale``), so a late event never moves a subscription back. A refund is money
that went back whatever the order, and always applies.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ...billing_models import (
    BillingAppliedEvent,
    BillingInvoice,
    BillingInvoiceLine,
    BillingPayment,
    BillingSubscription,
)
from ...db import transaction
from ..context import ServiceContext
from .calendar import add_interval
from .common import Actor, ActorKind, grace, move, settle
from .contract import EventKind, Interval, ProviderEvent, SubscriptionState
from .invoices import void_open_invoices
from .states import TERMINAL, Trigger, can, grace_end, later

log = logging.getLogger("tgflow.server.billing")
S = SubscriptionState


class ApplyOutcome(StrEnum):
    APPLIED = "applied"
    #: The event, or the payment it reports, was applied before.
    DUPLICATE = "duplicate"
    #: Older than the newest event applied to the subscription: stored, nothing moved.
    STALE = "stale"
    #: Nothing to do (an unknown subscription, a payment for a canceled one): stored.
    IGNORED = "ignored"


class CheckVerdict(StrEnum):
    """CloudPayments' Check: may this payment go ahead? (codes 0, 10, 11/12, 13)."""

    OK = "ok"
    UNKNOWN_INVOICE = "unknown_invoice"
    WRONG_AMOUNT = "wrong_amount"
    REJECTED = "rejected"


_PAID_KINDS = (EventKind.CHECKOUT_COMPLETED, EventKind.PAYMENT_SUCCEEDED)


_OUR_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _our_id(value: str | None) -> str | None:
    """``value`` if it can be one of our ids (a UUID), else ``None``: what a provider echoes
    back is not trusted to be one (a NUL byte would be PostgreSQL's error, not a miss)."""
    return value if value is not None and _OUR_ID.fullmatch(value) else None


#: The marker of one provider refund in ``billing_applied_events`` (its event id): the operator's
#: refund and every later event about the same refund (``refund.created``, ``charge.refunded``,
#: the reconciler's truth) find it and change nothing.
REFUND_MARK = "refund:"
#: What a full refund of the current period's payment comes to.
PERIOD_REFUNDED = "the current period refunded: entitlement ended"


def refund_seen(session: Session, provider: str, refund_ref: str) -> bool:
    key = (provider, f"{REFUND_MARK}{refund_ref}"[:255])
    return session.get(BillingAppliedEvent, key) is not None


def mark_refund(
    session: Session, event: ProviderEvent, subscription_id: str | None, now: datetime
) -> None:
    assert event.refund_ref
    session.add(
        BillingAppliedEvent(
            provider=event.provider.value,
            event_id=f"{REFUND_MARK}{event.refund_ref}"[:255],
            kind=EventKind.REFUNDED.value,
            subscription_id=subscription_id,
            occurred_at=event.occurred_at,
            applied_at=now,
            outcome=ApplyOutcome.APPLIED.value,
            note=f"{event.amount_minor} of payment {event.payment_ref}"[:300],
        )
    )


def _payment_of(session: Session, event: ProviderEvent) -> BillingPayment | None:
    """The payment ``event`` reports, if it names one and it is recorded."""
    if not event.payment_ref:
        return None
    return session.scalar(
        select(BillingPayment).where(
            BillingPayment.provider == event.provider.value,
            BillingPayment.payment_ref == event.payment_ref,
        )
    )


class BillingEvents:
    def __init__(self, ctx: ServiceContext) -> None:
        self._ctx = ctx

    def apply_event(self, event: ProviderEvent) -> ApplyOutcome:
        try:
            outcome, note = self._apply_once(event)
        except IntegrityError:
            # A concurrent application of the same event (or payment) won the race.
            outcome, note = ApplyOutcome.DUPLICATE, "applied concurrently"
        level = logging.WARNING if outcome is ApplyOutcome.STALE else logging.INFO
        log.log(
            level,
            "billing event %s/%s %s: %s%s",
            event.provider.value,
            event.event_id,
            event.kind.value,
            outcome.value,
            f" ({note})" if note else "",
        )
        return outcome

    def _apply_once(self, event: ProviderEvent) -> tuple[ApplyOutcome, str | None]:
        now = self._ctx.clock.now()
        with transaction(self._ctx.write) as session:
            invoice_id = _our_id(event.invoice_id)
            invoice = session.get(BillingInvoice, invoice_id) if invoice_id else None
            sub_id = invoice.subscription_id if invoice else _our_id(event.subscription_id)
            if sub_id is None and event.kind is EventKind.REFUNDED:
                # A refund names the payment it returns, not always our ids (Stripe's Refund
                # carries no metadata of ours).
                payment = _payment_of(session, event)
                sub_id = payment.subscription_id if payment is not None else None
            # The subscription's lock first: one subscription's events apply one at a time.
            sub = (
                session.scalar(
                    select(BillingSubscription)
                    .where(BillingSubscription.id == sub_id)
                    .with_for_update()
                )
                if sub_id
                else None
            )
            key = (event.provider.value, event.event_id)
            if session.get(BillingAppliedEvent, key) is not None:
                return ApplyOutcome.DUPLICATE, None
            if sub is None:
                outcome = ApplyOutcome.IGNORED
                note: str | None = "no such subscription or invoice"
            else:
                outcome, note = self._apply(session, sub, invoice, event, now)
                if outcome is ApplyOutcome.APPLIED:
                    sub.last_event_at = later(sub.last_event_at, event.occurred_at)
                    settle(self._ctx, session, sub)
            session.add(
                BillingAppliedEvent(
                    provider=event.provider.value,
                    event_id=event.event_id[:255],
                    kind=event.kind.value,
                    subscription_id=sub.id if sub is not None else None,
                    occurred_at=event.occurred_at,
                    applied_at=now,
                    outcome=outcome.value,
                    note=note,
                )
            )
            return outcome, note

    def _apply(
        self,
        session: Session,
        sub: BillingSubscription,
        invoice: BillingInvoice | None,
        event: ProviderEvent,
        now: datetime,
    ) -> tuple[ApplyOutcome, str | None]:
        kind = event.kind
        if kind is EventKind.REFUNDED:
            return self._refunded(session, sub, event)
        payment, repeated = self._record_payment(session, sub, invoice, event, now)
        if repeated:
            # Stripe announces the payment (payment_intent.succeeded, which starts the
            # subscription) before the checkout that names the kept card: the same payment, but
            # its card is kept all the same, or nothing could ever be renewed on it.
            if (
                kind is EventKind.CHECKOUT_COMPLETED
                and event.payment_method_ref
                and not sub.payment_method_ref
            ):
                sub.payment_method_ref = event.payment_method_ref[:255]
                return ApplyOutcome.DUPLICATE, "payment applied before; card kept"
            return ApplyOutcome.DUPLICATE, "payment applied before"
        if sub.last_event_at is not None and event.occurred_at < sub.last_event_at:
            return ApplyOutcome.STALE, f"older than {sub.last_event_at.isoformat()}"
        actor = Actor(ActorKind.PROVIDER, f"{event.provider.value}:{event.event_id}")
        state = S(sub.state)
        if kind is EventKind.CHECKOUT_COMPLETED or (
            kind is EventKind.PAYMENT_SUCCEEDED and state is S.INCOMPLETE
        ):
            if event.payment_method_ref:
                sub.payment_method_ref = event.payment_method_ref[:255]
            if state is S.INCOMPLETE:
                self._start(session, sub, invoice, event, actor)
                return ApplyOutcome.APPLIED, None
            if not (event.payment_ref and invoice is not None and invoice.status == "open"):
                return ApplyOutcome.APPLIED, "card kept"
            # A checkout that paid an open invoice of a live subscription (a renewal paid with
            # another card, POST /subscriptions/renew) pays it as any payment does.
            kind = EventKind.PAYMENT_SUCCEEDED
        if kind is EventKind.PAYMENT_SUCCEEDED:
            if not can(state, Trigger.PAYMENT_SUCCEEDED):
                return ApplyOutcome.IGNORED, f"a payment for a {state.value} subscription"
            if invoice is not None and invoice.status == "open":
                self._mark_paid(invoice, payment, event)
                if sub.paid_through is None or invoice.period_end > sub.paid_through:
                    sub.current_period_start = invoice.period_start
                    sub.current_period_end = invoice.period_end
                sub.paid_through = later(sub.paid_through, invoice.period_end)
            move(
                session,
                sub,
                Trigger.PAYMENT_SUCCEEDED,
                at=event.occurred_at,
                actor=actor,
                reason="payment succeeded",
            )
            sub.grace_ends_at = None
            sub.next_charge_at = sub.paid_through if S(sub.state) is S.ACTIVE else None
            return ApplyOutcome.APPLIED, None
        if kind is EventKind.PAYMENT_FAILED:
            if not can(state, Trigger.PAYMENT_FAILED):
                return ApplyOutcome.IGNORED, f"a failed payment for a {state.value} subscription"
            why = f"payment failed ({event.decline_code or 'declined'})"
            move(
                session, sub, Trigger.PAYMENT_FAILED, at=event.occurred_at, actor=actor, reason=why
            )
            if S(sub.state) is S.PAST_DUE and sub.grace_ends_at is None:
                sub.grace_ends_at = grace_end(
                    sub.paid_through or event.occurred_at, grace(self._ctx)
                )
            return ApplyOutcome.APPLIED, "hard decline" if event.hard_decline else None
        if kind is EventKind.CHECKOUT_EXPIRED:
            if state is not S.INCOMPLETE:
                return ApplyOutcome.IGNORED, f"the subscription is {state.value}"
            move(
                session,
                sub,
                Trigger.CHECKOUT_EXPIRED,
                at=event.occurred_at,
                actor=actor,
                reason="checkout expired",
            )
            void_open_invoices(session, sub.id, now)
            return ApplyOutcome.APPLIED, None
        # AGREEMENT_CANCELED: no more charges; what was paid stays in force.
        if not can(state, Trigger.AGREEMENT_CANCELED):
            return ApplyOutcome.IGNORED, f"the subscription is {state.value}"
        move(
            session,
            sub,
            Trigger.AGREEMENT_CANCELED,
            at=event.occurred_at,
            actor=actor,
            reason="the provider's agreement was canceled",
        )
        self._stop(session, sub, event.occurred_at, now)
        return ApplyOutcome.APPLIED, None

    # --- the parts -------------------------------------------------------------------------

    def _record_payment(
        self,
        session: Session,
        sub: BillingSubscription,
        invoice: BillingInvoice | None,
        event: ProviderEvent,
        now: datetime,
    ) -> tuple[BillingPayment | None, bool]:
        """The payment the event reports (if it reports one) and whether it was applied before:
        a success seen before, or a failure seen before in any form."""
        succeeded = event.kind in _PAID_KINDS
        if not event.payment_ref or event.kind not in (*_PAID_KINDS, EventKind.PAYMENT_FAILED):
            return None, False
        payment = _payment_of(session, event)
        if payment is not None:
            if payment.status == "succeeded" or not succeeded:
                return payment, True
            payment.status = "succeeded"  # a retried PaymentIntent that went through
            payment.occurred_at = event.occurred_at
            return payment, False
        amount = event.amount_minor
        if amount is None:
            amount = invoice.amount_due_minor if invoice is not None else 0
        payment = BillingPayment(
            provider=event.provider.value,
            payment_ref=event.payment_ref[:255],
            subscription_id=sub.id,
            invoice_id=invoice.id if invoice is not None else None,
            amount_minor=max(amount, 0),
            currency=(event.currency or sub.currency)[:3],
            status="succeeded" if succeeded else "failed",
            decline_code=event.decline_code[:64] if event.decline_code else None,
            hard_decline=event.hard_decline,
            refunded_minor=0,
            occurred_at=event.occurred_at,
            created_at=now,
        )
        session.add(payment)
        session.flush()
        return payment, False

    @staticmethod
    def _mark_paid(
        invoice: BillingInvoice, payment: BillingPayment | None, event: ProviderEvent
    ) -> None:
        invoice.status = "paid"
        invoice.paid_at = event.occurred_at
        invoice.amount_paid_minor = payment.amount_minor if payment else invoice.amount_due_minor

    def _start(
        self,
        session: Session,
        sub: BillingSubscription,
        invoice: BillingInvoice | None,
        event: ProviderEvent,
        actor: Actor,
    ) -> None:
        """The first payment (or the kept card of a trial): the first period starts when it was
        paid, not when the checkout opened."""
        start = event.occurred_at
        trial = sub.trial_end - sub.created_at if sub.trial_end is not None else None
        end = start + trial if trial is not None else add_interval(start, Interval(sub.interval))
        target = S.TRIALING if trial is not None else S.ACTIVE
        trigger = (
            Trigger.CHECKOUT_COMPLETED
            if event.kind is EventKind.CHECKOUT_COMPLETED
            else Trigger.PAYMENT_SUCCEEDED
        )
        move(session, sub, trigger, at=start, actor=actor, reason="first payment", target=target)
        sub.current_period_start = start
        sub.current_period_end = end
        sub.paid_through = later(sub.paid_through, end)
        sub.trial_end = end if trial is not None else None
        sub.next_charge_at = end
        if invoice is not None and invoice.status == "open":
            self._mark_paid(invoice, _payment_of(session, event), event)
            invoice.period_start, invoice.period_end = start, end
            for line in session.scalars(
                select(BillingInvoiceLine).where(BillingInvoiceLine.invoice_id == invoice.id)
            ):
                line.period_start, line.period_end = start, end

    def _refunded(
        self, session: Session, sub: BillingSubscription, event: ProviderEvent
    ) -> tuple[ApplyOutcome, str | None]:
        payment = _payment_of(session, event)
        if payment is None or payment.status != "succeeded":
            return ApplyOutcome.IGNORED, "no such payment"
        if event.refund_ref:
            if refund_seen(session, event.provider.value, event.refund_ref):
                return ApplyOutcome.DUPLICATE, "refund applied before"
            mark_refund(session, event, sub.id, self._ctx.clock.now())
        amount = event.amount_minor if event.amount_minor is not None else payment.amount_minor
        actor = Actor(ActorKind.PROVIDER, f"{event.provider.value}:{event.event_id}")
        note = self.book_refund(session, sub, payment, amount, at=event.occurred_at, actor=actor)
        return ApplyOutcome.APPLIED, note

    def book_refund(
        self,
        session: Session,
        sub: BillingSubscription,
        payment: BillingPayment,
        amount_minor: int,
        *,
        at: datetime,
        actor: Actor,
    ) -> str:
        """Money went back (a webhook's or an operator's refund): the payment carries it, and a
        FULL refund of the current period's payment ends the entitlement at ``at``. What came of
        it, in words."""
        payment.refunded_minor = min(
            payment.amount_minor, payment.refunded_minor + max(amount_minor, 0)
        )
        if payment.refunded_minor < payment.amount_minor:
            return "partial refund"
        invoice = session.get(BillingInvoice, payment.invoice_id) if payment.invoice_id else None
        if invoice is None or sub.paid_through is None or invoice.period_end < sub.paid_through:
            return "refund of a past period"
        self.end_paid_period(session, sub, at=at, actor=actor)
        return PERIOD_REFUNDED

    def end_paid_period(
        self, session: Session, sub: BillingSubscription, *, at: datetime, actor: Actor
    ) -> None:
        """A full refund of the current period: the one thing that shortens ``paid_through``.
        The subscription is canceled and the entitlement ends at ``at`` (the refund step calls
        this too)."""
        if sub.paid_through is not None and sub.paid_through > at:
            sub.paid_through = at
        sub.current_period_end = sub.paid_through
        if can(S(sub.state), Trigger.REFUNDED):
            move(session, sub, Trigger.REFUNDED, at=at, actor=actor, reason="period refunded")
        self._stop(session, sub, at, self._ctx.clock.now())

    @staticmethod
    def _stop(session: Session, sub: BillingSubscription, at: datetime, now: datetime) -> None:
        """No more charges (the subscription is over or will not renew)."""
        sub.canceled_at = sub.canceled_at or at
        sub.next_charge_at = None
        sub.grace_ends_at = None
        sub.cancel_at_period_end = False
        void_open_invoices(session, sub.id, now)

    # --- CloudPayments' Check --------------------------------------------------------------------

    def check_invoice(self, invoice_id: str, amount_minor: int, currency: str) -> CheckVerdict:
        """Whether a payment of ``amount_minor`` ``currency`` for our invoice may go ahead."""
        if _our_id(invoice_id) is None:
            return CheckVerdict.UNKNOWN_INVOICE
        with transaction(self._ctx.read) as session:
            invoice = session.get(BillingInvoice, invoice_id)
            if invoice is None:
                return CheckVerdict.UNKNOWN_INVOICE
            sub = session.get(BillingSubscription, invoice.subscription_id)
            if invoice.status != "open" or sub is None or S(sub.state) in TERMINAL:
                return CheckVerdict.REJECTED
            if currency.upper() != invoice.currency or amount_minor != invoice.amount_due_minor:
                return CheckVerdict.WRONG_AMOUNT
            return CheckVerdict.OK
