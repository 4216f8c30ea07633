"""A plan change of a live subscription (issue #12): its preview, done now (prorated) or at the
period's end (scheduled, applied by the renewal through :func:`apply_scheduled_change`).

The direction comes from the plans' ranks, never from prices (proration.py says why). The
money of a change now is :func:`proration.prorate`'s, computed once by :func:`_plan` for both
the preview and the change, so what the desktop shows is what is charged. A net to pay is
charged on the kept card before the plan switches: a decline changes nothing. A net credit is a
credit note the next invoice uses.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from agent.protocol import ChangeDirection, ChangeWhen

from ...billing_models import BillingInvoice, BillingPayment, BillingSubscription
from ...db import transaction
from ...errors import NotFound, ServiceUnavailable, ValidationFailed
from ...models import Plan
from ..audit import record
from ..context import ServiceContext
from .common import (
    Actor,
    SubscriptionView,
    record_transition,
    require_subscription,
    settle,
    subscription_view,
)
from .contract import (
    Interval,
    ProviderAdapter,
    ProviderName,
    ProviderRefused,
    ProviderUnavailable,
    SubscriptionState,
)
from .invoices import add_line, new_invoice
from .proration import (
    Proration,
    ProrationError,
    ScheduledChange,
    Settlement,
    prorate,
    scheduled_change,
)

S = SubscriptionState
#: Only a subscription in good standing changes plan (a past_due one pays what it owes first).
CHANGEABLE = frozenset({S.ACTIVE, S.TRIALING})


class ChargeDeclined(ValidationFailed):
    """The card refused the change's charge: nothing changed (422 ``validation_error``)."""


@dataclass(frozen=True)
class ChangePlan:
    """What a change would do (the preview) or did."""

    plan: str
    when: ChangeWhen
    direction: ChangeDirection
    effective_at: datetime
    new_price_minor: int
    currency: str
    interval: Interval
    #: For ``now`` on a paid period: the money. ``None``: a trial (nothing paid, nothing due) or
    #: a change at period end (nothing prorated).
    proration: Proration | None
    #: The invoice the change was billed on (an executed change with lines).
    invoice_id: str | None = None


@dataclass(frozen=True)
class ChangeResult:
    change: ChangePlan
    subscription: SubscriptionView


def direction_of(old: Plan, new: Plan) -> ChangeDirection:
    """Stated from the ranks; a plan of the same rank is a change only of interval."""
    if new.rank > old.rank:
        return ChangeDirection.UPGRADE
    if new.rank < old.rank:
        return ChangeDirection.DOWNGRADE
    if new.interval != old.interval:
        return ChangeDirection.INTERVAL_CHANGE
    raise ValidationFailed(
        f"{new.name!r} has the rank and interval of {old.name!r}: not an upgrade, a downgrade "
        "or an interval change"
    )


def _target(session: Session, sub: BillingSubscription, plan_name: str) -> tuple[Plan, Plan]:
    """``(current plan, new plan)``, or the refusal of the change."""
    state = S(sub.state)
    if state not in CHANGEABLE:
        raise ValidationFailed(
            f"a subscription that is {state.value} cannot change plan", state=state.value
        )
    plan = session.scalar(select(Plan).where(Plan.name == plan_name))
    if plan is None:
        raise NotFound(f"no plan named {plan_name!r}")
    if plan.retired_at is not None:
        raise ValidationFailed(f"the plan {plan_name!r} is retired")
    current = session.get(Plan, sub.plan_id)
    assert current is not None  # a foreign key
    if plan.id == current.id:
        raise ValidationFailed(f"the subscription is already on {plan_name!r}")
    if plan.currency != sub.currency:
        raise ValidationFailed(
            f"{plan_name!r} is priced in {plan.currency}, the subscription in {sub.currency}"
        )
    return current, plan


def _plan(
    session: Session, sub: BillingSubscription, plan_name: str, when: ChangeWhen, now: datetime
) -> tuple[ChangePlan, Plan]:
    current, plan = _target(session, sub, plan_name)
    direction = direction_of(current, plan)
    base = ChangePlan(
        plan=plan.name,
        when=when,
        direction=direction,
        effective_at=now,
        new_price_minor=plan.price_minor,
        currency=plan.currency,
        interval=Interval(plan.interval),
        proration=None,
    )
    end = sub.current_period_end or sub.paid_through
    if when is ChangeWhen.PERIOD_END:
        if sub.cancel_at_period_end or end is None:
            raise ValidationFailed("the subscription does not renew: there is no renewal to change")
        planned: ScheduledChange = scheduled_change(
            direction=direction,
            period_end=end,
            new_amount_minor=plan.price_minor,
            currency=plan.currency,
        )
        return replace(base, effective_at=planned.effective_at), plan
    if S(sub.state) is S.TRIALING:
        # Nothing was paid for the trial: the new plan runs the rest of it, and the first
        # charge (at the trial's end) is the new plan's price.
        return base, plan
    start = sub.current_period_start
    if start is None or end is None:
        raise ValidationFailed("the subscription has no paid period to prorate")
    try:
        money = prorate(
            old_amount_minor=sub.price_minor,
            new_amount_minor=plan.price_minor,
            currency=sub.currency,
            period_start=start,
            period_end=end,
            at=now,
            direction=direction,
            new_currency=plan.currency,
            new_interval=(
                Interval(plan.interval) if direction is ChangeDirection.INTERVAL_CHANGE else None
            ),
        )
    except ProrationError as exc:
        raise ValidationFailed(f"the change cannot be prorated: {exc}") from exc
    return replace(base, proration=money), plan


def _switch(
    session: Session,
    sub: BillingSubscription,
    plan: Plan,
    *,
    at: datetime,
    actor: Actor,
    reason: str,
    new_period_end: datetime | None = None,
) -> None:
    """Put ``sub`` on ``plan`` from ``at``, recorded in its history (the state stays)."""
    sub.plan_id = plan.id
    sub.price_minor = plan.price_minor
    sub.interval = plan.interval
    sub.scheduled_plan_id = None
    if new_period_end is not None:
        # An interval change starts a new period at the change (the new anchor).
        sub.current_period_start = at
        sub.current_period_end = new_period_end
        if sub.paid_through is None or new_period_end > sub.paid_through:
            sub.paid_through = new_period_end
        if sub.next_charge_at is not None:
            sub.next_charge_at = new_period_end
    sub.updated_at = at
    record_transition(session, sub, sub.state, sub.state, at=at, actor=actor, reason=reason)


def _audit(
    session: Session, at: datetime, actor: Actor, sub: BillingSubscription, details: dict[str, str]
) -> None:
    record(
        session,
        at,
        f"{actor.kind.value}:{actor.id}",
        "billing.subscription.change_plan",
        f"billing/subscription/{sub.id}",
        {**details, "state": sub.state},
    )


def apply_scheduled_change(session: Session, sub: BillingSubscription, now: datetime) -> bool:
    """Switch ``sub`` to its scheduled plan if its period has ended by ``now`` (for the renewal,
    before it bills the next period); returns whether it did. The caller settles the
    entitlement (``common.settle``) in the same transaction. A plan retired since the change was
    scheduled is still applied: the customer chose it while it was offered."""
    end = sub.current_period_end or sub.paid_through
    if sub.scheduled_plan_id is None or end is None or now < end:
        return False
    plan = session.get(Plan, sub.scheduled_plan_id)
    if plan is None:
        sub.scheduled_plan_id = None
        return False
    old = session.get(Plan, sub.plan_id)
    actor = Actor.system("billing.renewal")
    reason = f"plan {old.name if old else '?'} → {plan.name} at period end"
    _switch(session, sub, plan, at=end, actor=actor, reason=reason)
    _audit(session, now, actor, sub, {"plan": plan.name, "when": ChangeWhen.PERIOD_END.value})
    return True


class SubscriptionChanges:
    def __init__(self, ctx: ServiceContext, adapters: Mapping[ProviderName, ProviderAdapter]):
        self._ctx = ctx
        self._adapters = adapters

    def preview(self, user_id: str, plan_name: str, when: ChangeWhen) -> ChangePlan:
        """What :meth:`change` would do now; nothing is written."""
        now = self._ctx.clock.now()
        with transaction(self._ctx.read) as session:
            sub = require_subscription(session, user_id, lock=False)
            return _plan(session, sub, plan_name, when, now)[0]

    def change(self, actor: Actor, user_id: str, plan_name: str, when: ChangeWhen) -> ChangeResult:
        now = self._ctx.clock.now()
        with transaction(self._ctx.write) as session:
            sub = require_subscription(session, user_id, lock=True)
            planned, plan = _plan(session, sub, plan_name, when, now)
            money = planned.proration
            if money is None or money.settlement is not Settlement.INVOICE:
                return self._without_charge(session, sub, plan, planned, actor, now)
            invoice_id = self._open_invoice(session, sub, plan, money, now)
            charge = _Charge(
                subscription_id=sub.id,
                invoice_id=invoice_id,
                provider=sub.provider,
                payment_method_ref=sub.payment_method_ref,
                amount_minor=money.net_minor,
                currency=money.currency,
                plan=plan.name,
            )
        # Outside any transaction: the provider's round trip must not hold the lock.
        self._charge(charge)
        with transaction(self._ctx.write) as session:
            fresh = session.get(BillingSubscription, charge.subscription_id, with_for_update=True)
            invoice = session.get(BillingInvoice, invoice_id)
            assert fresh is not None and invoice is not None
            invoice.status = "paid"
            invoice.paid_at = now
            invoice.amount_paid_minor = invoice.amount_due_minor
            session.add(
                BillingPayment(
                    provider=fresh.provider,
                    payment_ref=charge.payment_ref,
                    subscription_id=fresh.id,
                    invoice_id=invoice.id,
                    amount_minor=money.net_minor,
                    currency=money.currency,
                    status="succeeded",
                    hard_decline=False,
                    refunded_minor=0,
                    occurred_at=now,
                    created_at=now,
                )
            )
            return self._done(session, fresh, plan, replace(planned, invoice_id=invoice_id), actor)

    def _without_charge(
        self,
        session: Session,
        sub: BillingSubscription,
        plan: Plan,
        planned: ChangePlan,
        actor: Actor,
        now: datetime,
    ) -> ChangeResult:
        if planned.when is ChangeWhen.PERIOD_END:
            sub.scheduled_plan_id = plan.id
            sub.updated_at = now
            reason = f"plan change to {plan.name} ({planned.direction.value}) scheduled at "
            reason += planned.effective_at.isoformat()
            record_transition(
                session, sub, sub.state, sub.state, at=now, actor=actor, reason=reason
            )
            _audit(session, now, actor, sub, {"plan": plan.name, "when": planned.when.value})
            settle(self._ctx, session, sub)
            return ChangeResult(planned, subscription_view(self._ctx, session, sub))
        money = planned.proration
        invoice_id = None
        if money is not None and money.lines:
            # A credit (or a zero net) still shows its lines; the excess credit becomes the
            # invoice's credit note (invoices._retotal), for the next invoice to use.
            invoice_id = self._open_invoice(session, sub, plan, money, now)
            invoice = session.get(BillingInvoice, invoice_id)
            assert invoice is not None
            invoice.status = "paid"
            invoice.paid_at = now
        return self._done(session, sub, plan, replace(planned, invoice_id=invoice_id), actor)

    def _done(
        self,
        session: Session,
        sub: BillingSubscription,
        plan: Plan,
        planned: ChangePlan,
        actor: Actor,
    ) -> ChangeResult:
        old = session.get(Plan, sub.plan_id)
        money = planned.proration
        interval_end = (
            money.period_end
            if money is not None and planned.direction is ChangeDirection.INTERVAL_CHANGE
            else None
        )
        reason = f"plan {old.name if old else '?'} → {plan.name} now ({planned.direction.value})"
        _switch(
            session,
            sub,
            plan,
            at=planned.effective_at,
            actor=actor,
            reason=reason,
            new_period_end=interval_end,
        )
        details = {"plan": plan.name, "when": planned.when.value}
        if money is not None:
            details["net_minor"] = str(money.net_minor)
        if planned.invoice_id is not None:
            details["invoice"] = planned.invoice_id
        _audit(session, planned.effective_at, actor, sub, details)
        settle(self._ctx, session, sub)
        return ChangeResult(planned, subscription_view(self._ctx, session, sub))

    @staticmethod
    def _open_invoice(
        session: Session, sub: BillingSubscription, plan: Plan, money: Proration, now: datetime
    ) -> str:
        invoice = new_invoice(
            session,
            subscription_id=sub.id,
            user_id=sub.user_id,
            currency=money.currency,
            period_start=money.effective_at,
            period_end=money.period_end,
            now=now,
        )
        old_plan_id = sub.plan_id
        for line in money.lines:
            credit = line.amount_minor < 0
            add_line(
                session,
                invoice,
                kind=line.kind.value,
                amount_minor=line.amount_minor,
                description=line.description_key,
                period_start=line.period_start,
                period_end=line.period_end,
                plan_id=old_plan_id if credit else plan.id,
                now=now,
            )
        return invoice.id

    def _charge(self, charge: _Charge) -> None:
        """Charge the kept card; on any failure the invoice is voided and nothing else moved."""
        adapter = self._adapters.get(ProviderName(charge.provider))
        failure: Exception | None = None
        try:
            if adapter is None:
                raise ServiceUnavailable(f"payments through {charge.provider} are not configured")
            if not charge.payment_method_ref:
                raise ValidationFailed("no card is kept for this subscription to charge")
            outcome = adapter.charge(
                invoice_id=charge.invoice_id,
                subscription_id=charge.subscription_id,
                payment_method_ref=charge.payment_method_ref,
                amount_minor=charge.amount_minor,
                currency=charge.currency,
                description=f"TGFlow: change to {charge.plan}",
                idempotency_key=f"change-{charge.invoice_id}",
            )
            if not outcome.succeeded:
                raise ChargeDeclined(
                    "the card was declined: the plan was not changed",
                    decline_code=outcome.decline_code or "declined",
                )
            charge.payment_ref = outcome.payment_ref
        except ProviderUnavailable as exc:
            failure = ServiceUnavailable(
                "the payment provider is unavailable; try again", headers={"Retry-After": "30"}
            )
            failure.__cause__ = exc
        except ProviderRefused as exc:
            failure = ChargeDeclined("the payment provider refused the charge")
            failure.__cause__ = exc
        except (ServiceUnavailable, ValidationFailed) as exc:
            failure = exc
        if failure is not None:
            with transaction(self._ctx.write) as session:
                invoice = session.get(BillingInvoice, charge.invoice_id)
                if invoice is not None and invoice.status == "open":
                    invoice.status = "void"
                    invoice.voided_at = self._ctx.clock.now()
            raise failure


@dataclass
class _Charge:
    subscription_id: str
    invoice_id: str
    provider: str
    payment_method_ref: str | None
    amount_minor: int
    currency: str
    plan: str
    payment_ref: str | None = None


__all__ = [
    "ChangePlan",
    "ChangeResult",
    "ChangeWhen",
    "SubscriptionChanges",
    "apply_scheduled_change",
    "direction_of",
]
