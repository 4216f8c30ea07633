"""The customer's subscription: create (a checkout at the provider), cancel, pause, resume, its
status; and the billing tick, what the clock alone does (an unpaid checkout expires, a grace runs
out, a period canceled at its end ends).

Every change is a transition of the state machine (states.py), recorded with who made it and
why, and the entitlement follows in the same transaction (entitlement.py).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from agent.protocol import CancelWhen

from ...billing_models import (
    BillingInvoice,
    BillingInvoiceLine,
    BillingSubscription,
    BillingTransition,
)
from ...db import transaction
from ...errors import AlreadyExists, NotFound, ServiceUnavailable, ValidationFailed
from ...models import Plan, User
from ..audit import record
from ..context import ServiceContext
from .calendar import add_interval
from .common import (
    STORES,
    Actor,
    StoreManaged,
    SubscriptionView,
    current_subscription,
    move,
    record_creation,
    require_subscription,
    settle,
    subscription_view,
)
from .contract import (
    Checkout,
    Interval,
    ProviderAdapter,
    ProviderName,
    ProviderRefused,
    ProviderUnavailable,
    SubscriptionState,
)
from .invoices import add_line, lines_of, new_invoice, void_open_invoices
from .renewals import notify_customer
from .states import TERMINAL, IllegalTransition, Trigger, due_trigger

log = logging.getLogger("tgflow.server.billing")
S = SubscriptionState


class ProviderNotConfigured(ServiceUnavailable):
    """The provider asked for is not configured on this server: billing fails closed (503, as
    ``/external`` does without its secret)."""


@dataclass(frozen=True)
class CreatedSubscription:
    subscription: SubscriptionView
    invoice_id: str
    checkout_url: str


@dataclass(frozen=True)
class _Opened:
    """A checkout's first invoice, as the provider is asked to charge it."""

    invoice_id: str
    subscription_id: str
    customer_email: str
    description: str
    amount_minor: int
    currency: str

    @classmethod
    def of(cls, invoice: BillingInvoice, email: str, description: str) -> _Opened:
        return cls(
            invoice_id=invoice.id,
            subscription_id=invoice.subscription_id,
            customer_email=email,
            description=description,
            amount_minor=invoice.amount_due_minor,
            currency=invoice.currency,
        )


@dataclass(frozen=True)
class SubscriptionHistory:
    subscription: SubscriptionView
    user_id: str
    transitions: list[BillingTransition]
    invoices: list[tuple[BillingInvoice, list[BillingInvoiceLine]]]


def _had_trial(session: Session, user_id: str) -> bool:
    """A trial is given once per account: whoever has trialed pays from the start."""
    trialed = exists().where(
        BillingTransition.subscription_id == BillingSubscription.id,
        BillingTransition.to_state == S.TRIALING.value,
    )
    return bool(
        session.scalar(select(exists().where(BillingSubscription.user_id == user_id, trialed)))
    )


def subscription_object(subscription_id: str) -> str:
    """The audit log's object path of a subscription."""
    return f"billing/subscription/{subscription_id}"


class Subscriptions:
    def __init__(self, ctx: ServiceContext, adapters: Mapping[ProviderName, ProviderAdapter]):
        self._ctx = ctx
        self._adapters = adapters

    # --- create -----------------------------------------------------------------------------

    def create(self, user_id: str, plan_name: str, provider: ProviderName) -> CreatedSubscription:
        """An ``incomplete`` subscription with its open first invoice, and the provider's
        checkout for it. An unpaid checkout of the user's is replaced; a live subscription is
        changed (another step), not created twice."""
        adapter = self._adapters.get(provider)
        if adapter is None:
            raise ProviderNotConfigured(f"payments through {provider.value} are not configured")
        now = self._ctx.clock.now()
        actor = Actor.user(user_id)
        with transaction(self._ctx.write) as session:
            # The user's row lock puts concurrent creates of one user in line.
            user = session.scalar(select(User).where(User.id == user_id).with_for_update())
            if user is None:
                raise NotFound("no such user")
            plan = session.scalar(
                select(Plan).where(Plan.name == plan_name, Plan.retired_at.is_(None))
            )
            if plan is None:
                raise NotFound(f"no plan named {plan_name!r} is offered")
            self._replace_unpaid(session, user_id, now, actor)
            trial_days = 0 if _had_trial(session, user_id) else plan.trial_days
            sub = BillingSubscription(
                user_id=user_id,
                plan_id=plan.id,
                state=S.INCOMPLETE.value,
                provider=provider.value,
                price_minor=plan.price_minor,
                currency=plan.currency,
                interval=plan.interval,
                cancel_at_period_end=False,
                # Provisional: the trial's length, counted again from when the checkout completes.
                trial_end=now + timedelta(days=trial_days) if trial_days else None,
                created_at=now,
                updated_at=now,
            )
            session.add(sub)
            session.flush()
            record_creation(session, sub, actor, f"checkout of plan {plan.name}")
            trial = trial_days > 0
            end = (
                now + timedelta(days=trial_days)
                if trial
                else add_interval(now, Interval(plan.interval))
            )
            invoice = new_invoice(
                session,
                subscription_id=sub.id,
                user_id=user_id,
                currency=plan.currency,
                period_start=now,
                period_end=end,
                now=now,
            )
            what = f"{plan.name}: {trial_days}-day trial" if trial else f"{plan.name}"
            add_line(
                session,
                invoice,
                kind="charge",
                amount_minor=0 if trial else plan.price_minor,
                description=what,
                period_start=now,
                period_end=end,
                plan_id=plan.id,
                now=now,
            )
            record(
                session,
                now,
                f"user:{user_id}",
                "billing.subscription.create",
                subscription_object(sub.id),
                {"plan": plan.name, "provider": provider.value, "invoice": invoice.id},
            )
            opened = _Opened.of(invoice, user.email, f"TGFlow {what}")
        # Outside any transaction: a provider's round trip must not hold the user's lock.
        checkout = self._checkout(adapter, opened, f"checkout-{opened.invoice_id}")
        view = self._keep_checkout(opened, checkout)
        return CreatedSubscription(view, opened.invoice_id, checkout.url)

    def checkout_open_invoice(self, invoice_id: str, idempotency_key: str) -> str:
        """The provider's checkout for an open invoice of a live subscription (a renewal the
        kept card did not pay): the customer pays it with another card, and that card is kept.
        Returns its URL. Call it outside any transaction."""
        with transaction(self._ctx.read) as session:
            invoice = session.get(BillingInvoice, invoice_id)
            sub = session.get(BillingSubscription, invoice.subscription_id) if invoice else None
            user = session.get(User, sub.user_id) if sub else None
            if invoice is None or sub is None or user is None or invoice.status != "open":
                raise NotFound("no such open invoice")
            provider = ProviderName(sub.provider)
            opened = _Opened.of(
                invoice, user.email, f"TGFlow renewal {invoice.period_start.date()}"
            )
        adapter = self._adapters.get(provider)
        if adapter is None:
            raise ProviderNotConfigured(f"payments through {provider.value} are not configured")
        checkout = self._checkout(adapter, opened, idempotency_key)
        self._keep_checkout(opened, checkout)
        return checkout.url

    def _keep_checkout(self, opened: _Opened, checkout: Checkout) -> SubscriptionView:
        with transaction(self._ctx.write) as session:
            row = session.get(BillingInvoice, opened.invoice_id)
            assert row is not None
            row.checkout_ref = checkout.checkout_ref[:255]
            row.checkout_url = checkout.url[:2048]
            fresh = session.get(BillingSubscription, opened.subscription_id)
            assert fresh is not None
            return subscription_view(self._ctx, session, fresh)

    def _checkout(self, adapter: ProviderAdapter, opened: _Opened, key: str) -> Checkout:
        settings = self._ctx.settings
        base = settings.public_url.rstrip("/")
        try:
            return adapter.create_checkout(
                invoice_id=opened.invoice_id,
                subscription_id=opened.subscription_id,
                customer_email=opened.customer_email,
                description=opened.description,
                amount_minor=opened.amount_minor,
                currency=opened.currency,
                success_url=settings.billing_success_url or f"{base}/billing/checkout/success",
                cancel_url=settings.billing_cancel_url or f"{base}/billing/checkout/cancel",
                idempotency_key=key,
            )
        except ProviderUnavailable as exc:
            raise ServiceUnavailable(
                f"{adapter.name.value} is unavailable; try again", headers={"Retry-After": "30"}
            ) from exc
        except ProviderRefused as exc:
            raise ValidationFailed(f"{adapter.name.value} refused the checkout") from exc

    def _replace_unpaid(self, session: Session, user_id: str, now: datetime, actor: Actor) -> None:
        live = current_subscription(session, user_id, lock=True)
        if live is None or S(live.state) in TERMINAL:
            return
        if live.provider in STORES:
            # "Cancel it first" would send the customer to a cancel billing refuses: the store
            # renews and ends it, so the customer is told to go there.
            raise StoreManaged(live.provider)
        if S(live.state) is not S.INCOMPLETE:
            raise AlreadyExists(
                f"this account already has a subscription ({live.state}): change its plan, "
                "or cancel it first"
            )
        move(session, live, Trigger.CHECKOUT_EXPIRED, at=now, actor=actor, reason="replaced")
        void_open_invoices(session, live.id, now)

    # --- the customer's (or staff's) acts ----------------------------------------------------

    def cancel(self, actor: Actor, user_id: str, when: CancelWhen) -> SubscriptionView:
        """At period end: no renewal, the state stays until the paid period ends (``resume``
        undoes it). Now: canceled at once. Either way access lasts until what was paid runs
        out; only a refund (another step: :meth:`BillingEvents.end_paid_period`) ends it."""
        now = self._ctx.clock.now()
        with transaction(self._ctx.write) as session:
            sub = require_subscription(session, user_id, lock=True)
            state = S(sub.state)
            if when is CancelWhen.PERIOD_END and state in (S.TRIALING, S.ACTIVE):
                sub.cancel_at_period_end = True
                sub.next_charge_at = None
                sub.updated_at = now
            else:
                # Anything else has no period left to run to: canceling it means now.
                move(session, sub, Trigger.CANCEL, at=now, actor=actor, reason=f"cancel {when}")
                sub.canceled_at = now
                sub.next_charge_at = None
                sub.cancel_at_period_end = False
                void_open_invoices(session, sub.id, now)
            self._audit(session, actor, "billing.subscription.cancel", sub, {"when": when.value})
            settle(self._ctx, session, sub)
            return subscription_view(self._ctx, session, sub)

    def pause(self, actor: Actor, user_id: str) -> SubscriptionView:
        """No renewals while paused; what was paid stays in force until it runs out."""
        now = self._ctx.clock.now()
        with transaction(self._ctx.write) as session:
            sub = require_subscription(session, user_id, lock=True)
            move(session, sub, Trigger.PAUSE, at=now, actor=actor, reason="pause")
            sub.paused_at = now
            sub.next_charge_at = None
            self._audit(session, actor, "billing.subscription.pause", sub, {})
            settle(self._ctx, session, sub)
            return subscription_view(self._ctx, session, sub)

    def resume(self, actor: Actor, user_id: str) -> SubscriptionView:
        """A paused subscription renews again (from the end of what was paid); one canceled at
        period end is no longer canceled."""
        now = self._ctx.clock.now()
        with transaction(self._ctx.write) as session:
            sub = require_subscription(session, user_id, lock=True)
            state = S(sub.state)
            if state is S.PAUSED:
                move(session, sub, Trigger.RESUME, at=now, actor=actor, reason="resume")
                sub.paused_at = None
            elif sub.cancel_at_period_end and state in (S.TRIALING, S.ACTIVE):
                sub.cancel_at_period_end = False
                sub.updated_at = now
            else:
                raise IllegalTransition(state, Trigger.RESUME)
            sub.next_charge_at = sub.paid_through
            self._audit(session, actor, "billing.subscription.resume", sub, {})
            settle(self._ctx, session, sub)
            return subscription_view(self._ctx, session, sub)

    def status(self, user_id: str) -> SubscriptionView | None:
        with transaction(self._ctx.read) as session:
            sub = current_subscription(session, user_id)
            return None if sub is None else subscription_view(self._ctx, session, sub)

    def history(self, subscription_id: str) -> SubscriptionHistory:
        """A subscription with every transition and invoice (for staff)."""
        with transaction(self._ctx.read) as session:
            sub = session.get(BillingSubscription, subscription_id)
            if sub is None:
                raise NotFound("no such subscription")
            transitions = list(
                session.scalars(
                    select(BillingTransition)
                    .where(BillingTransition.subscription_id == sub.id)
                    .order_by(BillingTransition.seq)
                )
            )
            invoices = list(
                session.scalars(
                    select(BillingInvoice)
                    .where(BillingInvoice.subscription_id == sub.id)
                    .order_by(BillingInvoice.created_at, BillingInvoice.id)
                )
            )
            return SubscriptionHistory(
                subscription=subscription_view(self._ctx, session, sub),
                user_id=sub.user_id,
                transitions=transitions,
                invoices=[(invoice, lines_of(session, invoice.id)) for invoice in invoices],
            )

    # --- the clock -----------------------------------------------------------------------------

    def tick(self) -> int:
        """Apply what the clock alone does to every subscription it concerns; returns how many
        moved. Each in its own transaction, so one bad row does not hold the others back."""
        now = self._ctx.clock.now()
        with transaction(self._ctx.read) as session:
            ids = list(
                session.scalars(
                    select(BillingSubscription.id).where(
                        BillingSubscription.state.in_(
                            (S.INCOMPLETE.value, S.PAST_DUE.value, S.TRIALING.value, S.ACTIVE.value)
                        )
                    )
                )
            )
        moved = 0
        for sub_id in ids:
            with transaction(self._ctx.write) as session:
                sub = session.scalar(
                    select(BillingSubscription)
                    .where(BillingSubscription.id == sub_id)
                    .with_for_update()
                )
                if sub is None:
                    continue
                trigger = due_trigger(
                    S(sub.state),
                    now=now,
                    created_at=sub.created_at,
                    paid_through=sub.paid_through,
                    cancel_at_period_end=sub.cancel_at_period_end,
                    grace_ends_at=sub.grace_ends_at,
                )
                if trigger is None:
                    continue
                target = S.UNPAID if trigger is Trigger.GRACE_EXPIRED else None
                actor = Actor.system("billing.tick")
                move(
                    session, sub, trigger, at=now, actor=actor, reason=trigger.value, target=target
                )
                if trigger in (Trigger.GRACE_EXPIRED, Trigger.PERIOD_ENDED):
                    self._ctx.metrics.billing_dunning.labels(sub.provider, "ended").inc()
                    notify_customer(
                        self._ctx, session, sub, "billing_ended", dedupe=sub.id, date=now
                    )
                if S(sub.state) in TERMINAL:
                    sub.canceled_at = sub.canceled_at or now
                    sub.next_charge_at = None
                    void_open_invoices(session, sub.id, now)
                settle(self._ctx, session, sub)
                moved += 1
        return moved

    def _audit(
        self,
        session: Session,
        actor: Actor,
        action: str,
        sub: BillingSubscription,
        details: dict[str, str],
    ) -> None:
        record(
            session,
            self._ctx.clock.now(),
            f"{actor.kind.value}:{actor.id}",
            action,
            subscription_object(sub.id),
            {**details, "state": sub.state},
        )
