"""Store subscriptions as billing subscriptions (docs/points.md, "Store purchases (RuStore)";
docs/billing.md, "Store subscriptions").

A RuStore subscription the store says is active is a ``billing_subscriptions`` row of provider
``rustore``: the product's plan, its price, ``paid_through`` a recheck window ahead
(``store_subscription_recheck_hours``: RuStore's state call answers only ``is_active``, so we ask
again rather than trust a date) and no ``next_charge_at`` (the store renews and charges; billing
has no adapter to charge it through). Billing's projector then makes its plan the license's.

One row per token: the row's ``payment_method_ref`` is the store purchase's ``ref``
(``rustore-sub:<token>``), written in the transaction that locks that purchase row, so two
verifies of one token find the same row. Active again: ``paid_through`` moves later, never
earlier. Not active: ``past_due`` with billing's grace from what was already paid, never extended;
billing's tick ends it (``unpaid``) when the grace runs out.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from agent.protocol import ProviderName

from ...billing_models import BillingSubscription
from ...errors import ValidationFailed
from ...models import Plan
from ..billing.common import Actor, ActorKind, grace, move, record_creation, settle
from ..billing.contract import SubscriptionState
from ..billing.states import TERMINAL, Trigger, grace_end, later
from ..context import ServiceContext
from .products import Product

S = SubscriptionState

#: The store purchase's ``ref`` of a subscription: ``rustore-sub:<token>`` (cut at 200).
REF_PREFIX: Final = "rustore-sub:"
REF_LENGTH: Final = 200
ACTOR: Final = Actor(ActorKind.PROVIDER, ProviderName.RUSTORE.value)


def subscription_ref(token: str) -> str:
    return f"{REF_PREFIX}{token}"[:REF_LENGTH]


def token_of(ref: str) -> str | None:
    """The token a ``ref`` was made of; ``None`` when the ref was cut (a token too long to keep:
    only the app's next verify can recheck it)."""
    if not ref.startswith(REF_PREFIX) or len(ref) >= REF_LENGTH:
        return None
    return ref[len(REF_PREFIX) :]


def recheck_window(ctx: ServiceContext) -> timedelta:
    return timedelta(hours=ctx.settings.store_subscription_recheck_hours)


def apply_store_subscription(
    ctx: ServiceContext,
    session: Session,
    user_id: str,
    ref: str,
    product: Product,
    active: bool,
) -> None:
    """What the store says of the subscription ``ref`` onto its billing row, then the license.
    Runs inside the caller's transaction (the one holding the store purchase's lock)."""
    now = ctx.clock.now()
    sub = session.scalar(
        select(BillingSubscription)
        .where(
            BillingSubscription.provider == ProviderName.RUSTORE.value,
            BillingSubscription.payment_method_ref == ref,
            BillingSubscription.state.not_in([s.value for s in TERMINAL]),
        )
        .with_for_update()
    )
    if sub is None:
        if not active:
            return  # nothing was ever granted: nothing to hold back
        sub = _open(session, user_id, ref, product, now)
    until = now + recheck_window(ctx)
    if active:
        # A new row waits for its first payment (billing's creation): this is it.
        first = S.ACTIVE if S(sub.state) is S.INCOMPLETE else None
        reason = "store: active"
        move(
            session,
            sub,
            Trigger.PAYMENT_SUCCEEDED,
            at=now,
            actor=ACTOR,
            reason=reason,
            target=first,
        )
        sub.paid_through = later(sub.paid_through, until)
        sub.current_period_end = sub.paid_through
        sub.grace_ends_at = None
    elif S(sub.state) in (S.ACTIVE, S.PAST_DUE):
        # On hold or ended at the store: what was paid plus billing's grace, then it lapses.
        move(session, sub, Trigger.PAYMENT_FAILED, at=now, actor=ACTOR, reason="store: not active")
        if sub.paid_through is not None and sub.grace_ends_at is None:
            sub.grace_ends_at = grace_end(sub.paid_through, grace(ctx))
    sub.next_charge_at = None  # the store charges; billing never does
    sub.last_event_at = now
    sub.updated_at = now
    settle(ctx, session, sub)


def _open(
    session: Session, user_id: str, ref: str, product: Product, now: datetime
) -> BillingSubscription:
    plan = session.scalar(select(Plan).where(Plan.name == (product.plan or "")))
    if plan is None:
        raise ValidationFailed(
            f"subscription {product.id!r} grants a plan this server does not have",
            reason="purchase_mismatch",
        )
    sub = BillingSubscription(
        user_id=user_id,
        plan_id=plan.id,
        state=S.INCOMPLETE.value,
        provider=ProviderName.RUSTORE.value,
        price_minor=product.price_minor,
        currency=product.currency,
        interval=plan.interval,
        payment_method_ref=ref,
        current_period_start=now,
        next_charge_at=None,
        cancel_at_period_end=False,
        created_at=now,
        updated_at=now,
    )
    session.add(sub)
    session.flush()
    record_creation(session, sub, ACTOR, "store subscription verified")
    return sub
