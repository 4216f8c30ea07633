"""Store subscriptions as billing subscriptions (docs/points.md, "Store purchases (RuStore)";
docs/billing.md, "Store subscriptions").

A RuStore subscription the store says is active is a ``billing_subscriptions`` row of provider
``rustore``: the product's plan, its price, ``paid_through`` a recheck window ahead
(``store_subscription_recheck_hours``: RuStore's state call answers only ``is_active``, so we ask
again rather than trust a date) and no ``next_charge_at`` (the store renews and charges; billing
has no adapter to charge it through). Billing's projector then makes its plan the license's.

One row per token: the row's ``payment_method_ref`` is the store purchase's ``ref``
(``rustore-sub:sha256:<hex>``: the whole token, however long, matched exactly in a key every
database indexes; the purchase's ``invoice_id`` keeps the token itself), written in the
transaction that locks that purchase row, so two verifies of one token find the same row.
What the store says is applied by the time it is of (a verify's or a recheck's ask, a
notification's ``change_status_time``): an answer older than the one applied is dropped.

Active again: ``paid_through`` moves later, never earlier. Not active: ``past_due`` with
billing's grace from what was already paid, never extended; billing's tick ends it (``unpaid``)
when the grace runs out.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from agent.protocol import ProviderName, StoreName

from ...billing_models import BillingSubscription
from ...db import transaction
from ...errors import IdempotencyConflict, ValidationFailed
from ...models import Plan
from ...store_models import StorePurchase
from ..billing.common import Actor, ActorKind, grace, move, record_creation, settle
from ..billing.contract import SubscriptionState
from ..billing.states import TERMINAL, Trigger, grace_end, later
from ..context import ServiceContext
from .products import Product

S = SubscriptionState

#: The store purchase's ``ref`` of a subscription: ``rustore-sub:sha256:<hex of the token>``.
REF_PREFIX: Final = "rustore-sub:sha256:"
#: Migration 0016's ref, ``rustore-sub:<token>`` cut at 200 (0017 moved every whole one).
_CUT_PREFIX: Final = "rustore-sub:"
_CUT_LENGTH: Final = 200
ACTOR: Final = Actor(ActorKind.PROVIDER, ProviderName.RUSTORE.value)


def subscription_ref(token: str) -> str:
    return REF_PREFIX + hashlib.sha256(token.encode("utf-8")).hexdigest()


def _cut_ref(token: str) -> str | None:
    """The ref 0016 gave ``token`` when it cut it; ``None`` for a token it kept whole."""
    ref = f"{_CUT_PREFIX}{token}"
    return ref[:_CUT_LENGTH] if len(ref) >= _CUT_LENGTH else None


def token_of(row: StorePurchase) -> str | None:
    """The subscription's token; ``None`` for a ref 0016 cut (its token is not whole: only the
    app's next verify, which sends it again, can recheck it)."""
    return row.invoice_id if row.ref.startswith(REF_PREFIX) else None


def claim_subscription(
    ctx: ServiceContext,
    user_id: str,
    token: str,
    product: Product,
    active: bool,
    at: datetime,
) -> None:
    """Record what the store said of ``token`` at ``at`` and apply it to the user's plan, in
    one transaction; a later answer applied already leaves both as they are."""
    ref = subscription_ref(token)
    now = ctx.clock.now()
    status = "ACTIVE" if active else "HOLD"
    with transaction(ctx.write) as session:
        row = session.get(StorePurchase, ref, with_for_update=True) or _uncut(session, token, ref)
        if row is not None and row.user_id != user_id:
            raise IdempotencyConflict(
                "this subscription was verified for another account",
                reason="purchase_other_account",
            )
        if row is not None and at < row.status_at:
            return  # older than what was applied: never move back
        if row is None:
            session.add(
                StorePurchase(
                    ref=ref,
                    store=StoreName.RUSTORE.value,
                    invoice_id=token,
                    user_id=user_id,
                    product_id=product.id,
                    status=status,
                    status_rank=0,
                    status_at=at,
                    points=0,
                    created_at=now,
                    updated_at=now,
                )
            )
        else:
            row.status, row.status_at, row.updated_at = status, at, now
        # The plan, in this transaction: committed with the purchase row, before the answer.
        apply_store_subscription(ctx, session, user_id, ref, product, active)


def _uncut(session: Session, token: str, ref: str) -> StorePurchase | None:
    """A purchase 0016 recorded under a cut ref, moved to ``ref`` (its billing row too) now
    that the whole token is here again; ``None`` when there is none."""
    cut = _cut_ref(token)
    if cut is None or session.get(StorePurchase, cut, with_for_update=True) is None:
        return None
    session.execute(
        update(StorePurchase)
        .where(StorePurchase.ref == cut)
        .values(ref=ref, invoice_id=token)
        .execution_options(synchronize_session=False)
    )
    session.execute(
        update(BillingSubscription)
        .where(
            BillingSubscription.provider == ProviderName.RUSTORE.value,
            BillingSubscription.payment_method_ref == cut,
        )
        .values(payment_method_ref=ref)
        .execution_options(synchronize_session=False)
    )
    session.expire_all()
    return session.get(StorePurchase, ref, with_for_update=True)


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
