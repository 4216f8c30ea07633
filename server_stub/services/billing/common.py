"""What billing's managers share: who acts, moving a subscription through the state machine
(recorded), the periods, the subscription's view."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Final

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from agent.protocol import ProviderName

from ...billing_models import BillingCreditNote, BillingSubscription, BillingTransition
from ...errors import NotFound, ValidationFailed
from ...models import Plan
from ..context import ServiceContext
from .contract import Interval, SubscriptionState
from .entitlement import entitlement_end, newest_first, project
from .states import TERMINAL, Trigger, transition

#: Providers that sell and renew by themselves (an app store): billing never charges through them.
STORES: Final = frozenset({ProviderName.RUSTORE.value})


class ActorKind(StrEnum):
    USER = "user"
    STAFF = "staff"
    PROVIDER = "provider"
    SYSTEM = "system"


@dataclass(frozen=True)
class Actor:
    """Who or what moved a subscription: a user's or staff member's id, a provider's event id,
    a system job's name."""

    kind: ActorKind
    id: str

    @classmethod
    def user(cls, user_id: str) -> Actor:
        return cls(ActorKind.USER, user_id)

    @classmethod
    def system(cls, job: str) -> Actor:
        return cls(ActorKind.SYSTEM, job)


def grace(ctx: ServiceContext) -> timedelta:
    return timedelta(days=ctx.settings.billing_grace_days)


def move(
    session: Session,
    sub: BillingSubscription,
    trigger: Trigger,
    *,
    at: datetime,
    actor: Actor,
    reason: str,
    target: SubscriptionState | None = None,
) -> SubscriptionState:
    """Take ``sub`` where ``trigger`` leads (raises ``IllegalTransition``); a change of state is
    recorded with who or what made it and why, a repeat (past_due → past_due) is not."""
    current = SubscriptionState(sub.state)
    new = transition(current, trigger, target)
    if new is not current:
        record_transition(session, sub, current.value, new.value, at=at, actor=actor, reason=reason)
        sub.state = new.value
    sub.updated_at = at
    return new


def record_creation(session: Session, sub: BillingSubscription, actor: Actor, reason: str) -> None:
    transition(None, Trigger.CREATE, SubscriptionState(sub.state))
    record_transition(session, sub, None, sub.state, at=sub.created_at, actor=actor, reason=reason)


def record_transition(
    session: Session,
    sub: BillingSubscription,
    from_state: str | None,
    to_state: str,
    *,
    at: datetime,
    actor: Actor,
    reason: str,
) -> None:
    """A line of the subscription's history: a move of state, or (same state) a change such as
    a new plan."""
    session.add(
        BillingTransition(
            subscription_id=sub.id,
            from_state=from_state,
            to_state=to_state,
            at=at,
            actor_kind=actor.kind.value,
            actor_id=actor.id[:200],
            reason=reason[:300],
        )
    )


def settle(ctx: ServiceContext, session: Session, sub: BillingSubscription) -> None:
    """The end of every change: the entitlement follows, in the same transaction."""
    session.flush()
    project(session, sub.user_id, grace(ctx), ctx.clock.now())


def current_subscription(
    session: Session, user_id: str, *, lock: bool = False
) -> BillingSubscription | None:
    """The user's subscription that still lives, else the newest one (or none)."""
    query = newest_first(user_id)
    if lock:
        query = query.with_for_update()
    subs = list(session.scalars(query))
    live = [s for s in subs if SubscriptionState(s.state) not in TERMINAL]
    ranked = live or subs
    return ranked[0] if ranked else None


class StoreManaged(ValidationFailed):
    """The subscription was bought in an app store: the store renews, pauses and cancels it
    (422 ``validation_error``, ``reason`` ``store_managed``); billing has no provider to ask."""

    def __init__(self, provider: str) -> None:
        super().__init__(
            f"this subscription is managed by {provider}: change or cancel it there",
            reason="store_managed",
            provider=provider,
        )


def require_subscription(session: Session, user_id: str, *, lock: bool) -> BillingSubscription:
    """The subscription a customer's (or staff's) act is about: one billing manages."""
    sub = current_subscription(session, user_id, lock=lock)
    if sub is None:
        raise NotFound("this account has no subscription")
    if sub.provider in STORES:
        raise StoreManaged(sub.provider)
    return sub


@dataclass(frozen=True)
class SubscriptionView:
    id: str
    plan: str
    state: SubscriptionState
    provider: str
    price_minor: int
    currency: str
    interval: Interval
    current_period_start: datetime | None
    current_period_end: datetime | None
    paid_through: datetime | None
    trial_end: datetime | None
    cancel_at_period_end: bool
    canceled_at: datetime | None
    paused_at: datetime | None
    grace_ends_at: datetime | None
    #: Until when the license is in force because of this subscription (None: never was).
    entitled_until: datetime | None
    created_at: datetime
    #: Credit notes issued and not yet used by an invoice (a downgrade's credit, say).
    pending_credit_minor: int = 0
    #: A plan change at period end: the plan and when it takes effect.
    scheduled_plan: str | None = None
    scheduled_change_at: datetime | None = None


def subscription_view(
    ctx: ServiceContext, session: Session, sub: BillingSubscription
) -> SubscriptionView:
    plan = session.get(Plan, sub.plan_id)
    assert plan is not None  # a foreign key
    scheduled = session.get(Plan, sub.scheduled_plan_id) if sub.scheduled_plan_id else None
    credit = session.scalar(
        select(func.coalesce(func.sum(BillingCreditNote.amount_minor), 0)).where(
            BillingCreditNote.subscription_id == sub.id,
            BillingCreditNote.status == "issued",
            BillingCreditNote.applied_invoice_id.is_(None),
        )
    )
    return SubscriptionView(
        id=sub.id,
        plan=plan.name,
        state=SubscriptionState(sub.state),
        provider=sub.provider,
        price_minor=sub.price_minor,
        currency=sub.currency,
        interval=Interval(sub.interval),
        current_period_start=sub.current_period_start,
        current_period_end=sub.current_period_end,
        paid_through=sub.paid_through,
        trial_end=sub.trial_end,
        cancel_at_period_end=sub.cancel_at_period_end,
        canceled_at=sub.canceled_at,
        paused_at=sub.paused_at,
        grace_ends_at=sub.grace_ends_at,
        entitled_until=entitlement_end(sub, grace(ctx)),
        created_at=sub.created_at,
        pending_credit_minor=int(credit or 0),
        scheduled_plan=scheduled.name if scheduled else None,
        scheduled_change_at=(sub.current_period_end or sub.paid_through) if scheduled else None,
    )
