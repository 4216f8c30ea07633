"""The "Plans & billing" tab's words for what the server answers, in the window's language:
prices per interval, states, dates, the notes on a subscription, invoice rows and the priced
plan change. Plain functions of a translator (no widgets), so the panel only places them."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from agent.protocol import ChangeWhen, Interval, SubscriptionState
from app.core_billing import PROVIDER_NAMES
from app.i18n import N_, Translator

from .formatting import format_count, format_datetime, format_price

if TYPE_CHECKING:
    from agent.protocol import CustomerInvoiceOut, PlanChangeOut, PlanOut, SubscriptionOut

_STATE_KEYS = {
    SubscriptionState.INCOMPLETE: N_("billing.state.incomplete"),
    SubscriptionState.INCOMPLETE_EXPIRED: N_("billing.state.incomplete_expired"),
    SubscriptionState.TRIALING: N_("billing.state.trialing"),
    SubscriptionState.ACTIVE: N_("billing.state.active"),
    SubscriptionState.PAST_DUE: N_("billing.state.past_due"),
    SubscriptionState.UNPAID: N_("billing.state.unpaid"),
    SubscriptionState.CANCELED: N_("billing.state.canceled"),
    SubscriptionState.PAUSED: N_("billing.state.paused"),
}
_INVOICE_KEYS = {
    "draft": N_("billing.invoice.draft"),
    "open": N_("billing.invoice.open"),
    "paid": N_("billing.invoice.paid"),
    "void": N_("billing.invoice.void"),
    "uncollectible": N_("billing.invoice.uncollectible"),
}
_PAYMENT_KEYS = {
    "succeeded": N_("billing.payment.succeeded"),
    "failed": N_("billing.payment.failed"),
}
_DIRECTION_KEYS = {
    "upgrade": N_("billing.direction.upgrade"),
    "downgrade": N_("billing.direction.downgrade"),
    "interval_change": N_("billing.direction.interval_change"),
}
_PER_KEYS = {Interval.MONTH: N_("billing.per_month"), Interval.YEAR: N_("billing.per_year")}


class BillingText:
    def __init__(self, translator: Translator) -> None:
        self._tr = translator

    def money(self, minor: int, currency: str) -> str:
        """An amount (``0.00 USD``, never "free")."""
        return format_price(minor, currency, self._tr, zero_is_free=False)

    def price(self, price_minor: int, currency: str, interval: Interval) -> str:
        """A plan's price: ``9.90 USD a month``, or ``free``."""
        price = format_price(price_minor, currency, self._tr)
        return self._tr.tr(_PER_KEYS[interval], price=price) if price_minor else price

    def date(self, when: datetime | None) -> str:
        return format_datetime(when, self._tr)

    def period(self, start: datetime, end: datetime | None) -> str:
        return self._tr.tr("billing.period_value", start=self.date(start), end=self.date(end))

    def state(self, state: SubscriptionState) -> str:
        return self._tr.tr(_STATE_KEYS[state])

    def plan_cells(self, plan: PlanOut) -> tuple[str, ...]:
        """Name, price, messages a month, devices."""
        return (
            plan.name,
            self.price(plan.price_minor, plan.currency, plan.interval),
            format_count(plan.monthly_quota, self._tr),
            str(plan.max_devices),
        )

    def note(self, sub: SubscriptionOut) -> str:
        """What is pending or scheduled about ``sub`` (empty when nothing is)."""
        tr = self._tr.tr
        notes = []
        if sub.state == SubscriptionState.INCOMPLETE:
            notes.append(tr("billing.note.incomplete"))
        if sub.cancel_at_period_end:
            notes.append(tr("billing.note.cancel_at_period_end", when=self.date(sub.paid_through)))
        if sub.state == SubscriptionState.PAST_DUE:
            notes.append(tr("billing.note.past_due", when=self.date(sub.grace_ends_at)))
        if sub.scheduled_plan is not None:
            when = self.date(sub.scheduled_change_at)
            notes.append(tr("billing.note.scheduled", plan=sub.scheduled_plan, when=when))
        if sub.pending_credit_minor:
            credit = self.money(sub.pending_credit_minor, sub.currency)
            notes.append(tr("billing.note.credit", amount=credit))
        return " ".join(notes)

    def invoice_cells(self, invoice: CustomerInvoiceOut) -> tuple[str, ...]:
        """Date, period, state, total, paid, and each payment (amount, provider, outcome)."""
        tr = self._tr.tr
        payments = [
            tr(
                "billing.payment",
                amount=self.money(payment.amount_minor, payment.currency),
                provider=PROVIDER_NAMES.get(payment.provider, payment.provider.value),
                status=tr(_PAYMENT_KEYS[payment.status]),
            )
            for payment in invoice.payments
        ]
        return (
            self.date(invoice.created_at),
            self.period(invoice.period_start, invoice.period_end),
            tr(_INVOICE_KEYS[invoice.status]),
            self.money(invoice.total_minor, invoice.currency),
            self.money(invoice.amount_paid_minor, invoice.currency),
            "; ".join(payments) or "—",
        )

    def preview(self, change: PlanChangeOut) -> str:
        """A plan change priced before it is confirmed: now, its credit, charge and what is
        paid (or credited); at the period's end, when and at what price."""
        tr = self._tr.tr
        direction = tr(_DIRECTION_KEYS[change.direction.value])
        if change.when == ChangeWhen.PERIOD_END:
            return tr(
                "billing.preview.period_end",
                plan=change.plan,
                direction=direction,
                when=self.date(change.effective_at),
                price=self.price(change.new_price_minor, change.currency, change.interval),
            )
        money = {
            "credit": self.money(change.credit_minor, change.currency),
            "charge": self.money(change.charge_minor, change.currency),
            "net": self.money(abs(change.net_minor), change.currency),
        }
        if change.net_minor > 0:
            key = N_("billing.preview.pay")
        elif change.net_minor < 0:
            key = N_("billing.preview.credit")
        else:
            key = N_("billing.preview.even")
        return tr(key, plan=change.plan, direction=direction, **money)
