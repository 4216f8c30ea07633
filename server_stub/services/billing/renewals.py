"""Renewals and dunning (docs/billing.md, "Renewals and dunning"): a due subscription is
invoiced for its next anchored period and its kept card charged; a decline is retried on the
schedule of ``billing_retry_days`` (dunning_schedule.py) counted from the failed renewal, never
after a hard decline; when dunning stops, the grace (``billing_grace_days``) runs from the last
failure and the clock's tick (subscriptions.py) then makes the subscription ``unpaid``.

What a charge answered is applied as the provider's webhook would apply it (events.py, with an
event id of our own), so the webhook that arrives later for the same ``payment_ref`` finds the
payment applied and changes nothing. Nothing here ever moves ``paid_through`` back.

The idempotency key of a charge is ``renewal-<invoice id>-<attempt>``: a run that charged and
died before recording asks again with the same key and the provider replays its first answer.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ...billing_models import BillingAppliedEvent, BillingInvoice, BillingSubscription
from ...db import transaction
from ...models import User
from ..context import ServiceContext
from ..notifications import enqueue_to_user
from .calendar import add_interval, period_containing
from .changes import apply_scheduled_change
from .common import grace, settle
from .contract import (
    ChargeOutcome,
    EventKind,
    Interval,
    ProviderAdapter,
    ProviderEvent,
    ProviderName,
    ProviderRefused,
    ProviderUnavailable,
    SubscriptionState,
)
from .dunning_schedule import DeclineClass, classify_decline, next_retry_at
from .events import BillingEvents
from .invoices import add_line, apply_credit, new_invoice
from .states import grace_end

log = logging.getLogger("tgflow.server.billing")
S = SubscriptionState

#: The states whose subscription is charged when ``next_charge_at`` comes.
_CHARGED = (S.TRIALING.value, S.ACTIVE.value, S.PAST_DUE.value)


class DunningOutcome(StrEnum):
    """One renewal attempt's outcome (the label of ``tgflow_billing_dunning_total``)."""

    RENEWED = "renewed"
    RETRY_SCHEDULED = "retry_scheduled"
    HARD_DECLINED = "hard_declined"
    #: Soft declines until the schedule was spent: dunning stopped, the grace runs.
    RETRIES_SPENT = "retries_spent"
    #: The grace ran out (or a period canceled at its end ended): no longer renews.
    ENDED = "ended"


@dataclass(frozen=True)
class Attempt:
    """What to charge, decided under the subscription's lock and charged outside it."""

    subscription_id: str
    invoice_id: str
    #: Failed attempts of this invoice so far (0: the renewal itself).
    attempt: int
    #: When the renewal itself (attempt 0) was made: the retry schedule counts from it.
    first_attempt_at: datetime
    provider: ProviderName
    payment_method_ref: str
    amount_minor: int
    currency: str
    description: str


@dataclass(frozen=True)
class Charged:
    """What one attempt came to: its dunning outcome, and the decline when it failed."""

    outcome: DunningOutcome
    decline_code: str | None = None

    @property
    def paid(self) -> bool:
        return self.outcome is DunningOutcome.RENEWED


def _failure_prefix(invoice_id: str) -> str:
    return f"renewal:{invoice_id}:"


def open_renewal_invoice(session: Session, sub: BillingSubscription) -> BillingInvoice | None:
    """The open invoice of the period after what was paid: the renewal being collected."""
    if sub.paid_through is None:
        return None
    return session.scalar(
        select(BillingInvoice).where(
            BillingInvoice.subscription_id == sub.id,
            BillingInvoice.status == "open",
            BillingInvoice.period_start == sub.paid_through,
        )
    )


def attempt_of(session: Session, sub: BillingSubscription, invoice: BillingInvoice) -> Attempt:
    """The next charge of ``invoice`` on the kept card: its number counts the failures so far,
    so a retry has a new idempotency key and a replay of the same attempt has the same one."""
    assert sub.payment_method_ref is not None
    failures = session.scalar(
        select(func.count())
        .select_from(BillingAppliedEvent)
        .where(
            BillingAppliedEvent.provider == sub.provider,
            BillingAppliedEvent.event_id.startswith(_failure_prefix(invoice.id)),
        )
    )
    return Attempt(
        subscription_id=sub.id,
        invoice_id=invoice.id,
        attempt=int(failures or 0),
        first_attempt_at=invoice.created_at,
        provider=ProviderName(sub.provider),
        payment_method_ref=sub.payment_method_ref,
        amount_minor=invoice.amount_due_minor,
        currency=invoice.currency,
        description=f"TGFlow renewal {invoice.period_start.date()}",
    )


def anchor_of(session: Session, sub: BillingSubscription) -> datetime:
    """The original anchor of the subscription's periods: the start of its earliest paid
    invoice that covers one whole interval (a trial's invoice does not; its first charged period
    then starts at the trial's end, ``paid_through``). Every boundary is computed from it, so a
    Jan 31 anchor renews on Feb 28/29 and then on Mar 31 (calendar.py)."""
    interval = Interval(sub.interval)
    for start, end in session.execute(
        select(BillingInvoice.period_start, BillingInvoice.period_end)
        .where(BillingInvoice.subscription_id == sub.id, BillingInvoice.status == "paid")
        .order_by(BillingInvoice.period_start)
    ):
        if add_interval(start, interval) == end:
            return start
    assert sub.paid_through is not None
    return sub.paid_through


def notify_customer(
    ctx: ServiceContext,
    session: Session,
    sub: BillingSubscription,
    kind: str,
    *,
    dedupe: str,
    date: datetime,
    amount_minor: int | None = None,
) -> None:
    """A dunning step's e-mail to the subscription's user, in the notifications outbox (the
    transaction of the step); nothing when SMTP is not configured (delivery is optional)."""
    if not ctx.settings.notify_smtp_host:
        return
    user = session.get(User, sub.user_id)
    if user is None:
        return
    payload: dict[str, object] = {"date": date.isoformat(), "currency": sub.currency}
    if amount_minor is not None:
        payload["amount_minor"] = amount_minor
    enqueue_to_user(
        session, kind=kind, to=user.email, dedupe=dedupe, payload=payload, now=ctx.clock.now()
    )


class Renewals:
    def __init__(
        self,
        ctx: ServiceContext,
        adapters: Mapping[ProviderName, ProviderAdapter],
        events: BillingEvents,
    ) -> None:
        self._ctx = ctx
        self._adapters = adapters
        self._events = events

    def renew_due(self) -> dict[DunningOutcome, int]:
        """Charge every due subscription once; returns how many came to each outcome. A provider
        that is unavailable leaves its subscriptions as they were (the next pass tries again)."""
        now = self._ctx.clock.now()
        with transaction(self._ctx.read) as session:
            ids = list(
                session.scalars(
                    select(BillingSubscription.id)
                    .where(
                        BillingSubscription.state.in_(_CHARGED),
                        BillingSubscription.next_charge_at.is_not(None),
                        BillingSubscription.next_charge_at <= now,
                        BillingSubscription.cancel_at_period_end.is_(False),
                        BillingSubscription.payment_method_ref.is_not(None),
                    )
                    .order_by(BillingSubscription.next_charge_at, BillingSubscription.id)
                )
            )
        counts: dict[DunningOutcome, int] = {}
        for sub_id in ids:
            try:
                outcome = self._renew_one(sub_id, now)
            except ProviderUnavailable:
                log.warning("billing renewal of %s: provider unavailable; next pass", sub_id)
                continue
            if outcome is not None:
                counts[outcome] = counts.get(outcome, 0) + 1
        return counts

    def _renew_one(self, sub_id: str, now: datetime) -> DunningOutcome | None:
        attempt = self._prepare(sub_id, now)
        if attempt is None:
            return None
        if attempt.provider not in self._adapters:
            log.warning("billing renewal of %s: %s not configured", sub_id, attempt.provider)
            return None
        return self.charge(attempt, now).outcome

    def charge(self, attempt: Attempt, now: datetime) -> Charged:
        """Charge one attempt on the kept card and apply its answer (a renewal, a dunning retry
        or the customer's renewal now): a success pays the invoice, a failure schedules the next
        retry or starts the grace. Raises ``ProviderUnavailable`` (nothing changed)."""
        if attempt.amount_minor == 0:
            # Credit paid it all: nothing to charge, the invoice is paid as a charge would pay it.
            answer: ChargeOutcome | None = ChargeOutcome(succeeded=True)
        else:
            answer = self._charge_card(attempt)
        return self._apply_answer(attempt, answer, now)

    def _charge_card(self, attempt: Attempt) -> ChargeOutcome | None:
        """The provider's answer (``None``: it refused the request itself, a soft decline)."""
        adapter = self._adapters[attempt.provider]
        try:
            return adapter.charge(
                invoice_id=attempt.invoice_id,
                subscription_id=attempt.subscription_id,
                payment_method_ref=attempt.payment_method_ref,
                amount_minor=attempt.amount_minor,
                currency=attempt.currency,
                description=attempt.description,
                idempotency_key=f"renewal-{attempt.invoice_id}-{attempt.attempt}",
            )
        except ProviderRefused:
            # The provider refused the request itself: a soft decline, retried on the schedule.
            return None

    def _apply_answer(
        self, attempt: Attempt, answer: ChargeOutcome | None, now: datetime
    ) -> Charged:
        # Applied as the provider's webhook would be: its own event id, the same payment_ref.
        base = ProviderEvent(
            provider=attempt.provider,
            event_id=f"{_failure_prefix(attempt.invoice_id)}{attempt.attempt}",
            kind=EventKind.PAYMENT_FAILED,
            occurred_at=now,
            invoice_id=attempt.invoice_id,
            subscription_id=attempt.subscription_id,
            amount_minor=attempt.amount_minor,
            currency=attempt.currency,
        )
        if answer is not None and answer.succeeded:
            self._events.apply_event(
                replace(
                    base,
                    event_id=f"charge:{attempt.invoice_id}:{attempt.attempt}",
                    kind=EventKind.PAYMENT_SUCCEEDED,
                    payment_ref=answer.payment_ref,
                )
            )
            with transaction(self._ctx.write) as session:
                sub = session.get(BillingSubscription, attempt.subscription_id)
                if sub is not None and sub.paid_through is not None:
                    notify_customer(
                        self._ctx,
                        session,
                        sub,
                        "billing_renewed",
                        dedupe=attempt.invoice_id,
                        date=sub.paid_through,
                        amount_minor=attempt.amount_minor,
                    )
            return Charged(self._count(attempt.provider, DunningOutcome.RENEWED))
        decline = answer.decline_code if answer is not None else "provider_refused"
        hard = answer is not None and (
            answer.hard_decline or classify_decline(answer.decline_code) is DeclineClass.HARD
        )
        self._events.apply_event(
            replace(
                base,
                payment_ref=answer.payment_ref if answer is not None else None,
                decline_code=decline,
                hard_decline=hard,
            )
        )
        outcome = self._schedule(attempt, now, decline, hard)
        return Charged(self._count(attempt.provider, outcome), decline)

    def _prepare(self, sub_id: str, now: datetime) -> Attempt | None:
        """The renewal's invoice (opened on the first attempt, the same one on each retry)."""
        with transaction(self._ctx.write) as session:
            sub = session.scalar(
                select(BillingSubscription)
                .where(BillingSubscription.id == sub_id)
                .with_for_update()
            )
            if (
                sub is None
                or sub.state not in _CHARGED
                or sub.next_charge_at is None
                or sub.next_charge_at > now
                or sub.cancel_at_period_end
                or not sub.payment_method_ref
                or sub.paid_through is None
            ):
                return None
            start = sub.paid_through
            invoice = open_renewal_invoice(session, sub)
            if invoice is None:
                # A change the customer scheduled for the period's end takes effect before the
                # next period is billed: its price, its interval (a new interval anchors anew).
                if apply_scheduled_change(session, sub, now):
                    settle(self._ctx, session, sub)
                _, end = period_containing(anchor_of(session, sub), Interval(sub.interval), start)
                invoice = new_invoice(
                    session,
                    subscription_id=sub.id,
                    user_id=sub.user_id,
                    currency=sub.currency,
                    period_start=start,
                    period_end=end,
                    now=now,
                )
                add_line(
                    session,
                    invoice,
                    kind="charge",
                    amount_minor=sub.price_minor,
                    description=f"renewal {start.date()} - {end.date()}",
                    period_start=start,
                    period_end=end,
                    plan_id=sub.plan_id,
                    now=now,
                )
                apply_credit(session, invoice, now)  # a downgrade's credit note, say
            return attempt_of(session, sub, invoice)

    def _schedule(
        self, attempt: Attempt, now: datetime, decline: str | None, hard: bool
    ) -> DunningOutcome:
        """After a failure: the next retry, or (hard, or the schedule spent) the grace from now.
        While a retry is pending the grace lasts at least until it, so the tick does not end a
        subscription that may yet pay."""
        retry = (
            None
            if hard
            else next_retry_at(
                failed_at=attempt.first_attempt_at,
                retries_done=attempt.attempt,
                retry_days=self._ctx.settings.billing_retry_days,
                decline_code=decline,
            )
        )
        with transaction(self._ctx.write) as session:
            sub = session.scalar(
                select(BillingSubscription)
                .where(BillingSubscription.id == attempt.subscription_id)
                .with_for_update()
            )
            if sub is None or sub.state != S.PAST_DUE.value or sub.paid_through is None:
                return DunningOutcome.RETRY_SCHEDULED if retry else DunningOutcome.RETRIES_SPENT
            base = grace_end(sub.paid_through, grace(self._ctx))
            if retry is not None:
                sub.next_charge_at = retry
                sub.grace_ends_at = max(base, retry)
                kind, dedupe = "billing_renewal_failed", f"{attempt.invoice_id}:{attempt.attempt}"
            else:
                sub.next_charge_at = None
                sub.grace_ends_at = max(base, now + grace(self._ctx))
                kind, dedupe = "billing_final_notice", attempt.invoice_id
            notify_customer(
                self._ctx,
                session,
                sub,
                kind,
                dedupe=dedupe,
                date=sub.next_charge_at or sub.grace_ends_at,
                amount_minor=attempt.amount_minor,
            )
            sub.updated_at = now
            settle(self._ctx, session, sub)  # the license follows the moved grace
        if retry is not None:
            return DunningOutcome.RETRY_SCHEDULED
        return DunningOutcome.HARD_DECLINED if hard else DunningOutcome.RETRIES_SPENT

    def _count(self, provider: ProviderName, outcome: DunningOutcome) -> DunningOutcome:
        self._ctx.metrics.billing_dunning.labels(provider.value, outcome.value).inc()
        return outcome


def monthly_recurring_revenue(session: Session) -> dict[str, int]:
    """MRR per currency, minor units: the price of each ``active`` subscription normalised to
    a month, a yearly one's price divided by 12 with integer division (each subscription's share
    rounded down on its own, so the gauge never claims a kopeck not billed; the error is under
    one minor unit per yearly subscription)."""
    totals: dict[str, int] = {}
    for price, currency, interval in session.execute(
        select(
            BillingSubscription.price_minor,
            BillingSubscription.currency,
            BillingSubscription.interval,
        ).where(BillingSubscription.state == S.ACTIVE.value)
    ):
        monthly = price // 12 if interval == Interval.YEAR.value else price
        totals[currency] = totals.get(currency, 0) + monthly
    return totals
