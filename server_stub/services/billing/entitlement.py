"""The projector: billing's subscription → the entitlement the hot paths read.

``subscriptions`` (models.py) is what ``/license``, ``/usage/reserve`` and the device limit read,
with one predicate (``services/periods.entitled``): status active and ``entitled_until`` ahead
(or NULL, an operator-assigned plan). Billing calls :func:`project` in the transaction of every
change it makes, so the license follows the subscription at once and never disagrees with it.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from ...billing_models import BillingSubscription, BillingTransition
from ...models import Subscription
from .contract import SubscriptionState
from .states import access_until


def entitlement_end(sub: BillingSubscription, grace: timedelta) -> datetime | None:
    """Until when ``sub`` entitles its user (``None``: never paid, never trialed)."""
    return access_until(
        SubscriptionState(sub.state),
        sub.paid_through,
        cancel_at_period_end=sub.cancel_at_period_end,
        grace_ends_at=sub.grace_ends_at,
        grace=grace,
    )


def newest_first(user_id: str) -> Select[BillingSubscription]:
    """``user_id``'s subscriptions, the newest first. Two made at one instant (a checkout that
    replaced another) are told apart by their creation's transition (its sequence grows); the
    random ids alone would pick one at random."""
    created = (
        select(func.min(BillingTransition.seq))
        .where(BillingTransition.subscription_id == BillingSubscription.id)
        .scalar_subquery()
    )
    return (
        select(BillingSubscription)
        .where(BillingSubscription.user_id == user_id)
        .order_by(BillingSubscription.created_at.desc(), created.desc(), BillingSubscription.id)
    )


def project(session: Session, user_id: str, grace: timedelta, now: datetime) -> None:
    """Write the entitlement of all of ``user_id``'s subscriptions onto their ``subscriptions`` row.

    A user may hold several (one canceled but paid through a later date, then a new one): the
    entitlement lasts until the LATEST end among them, so no change to one subscription takes
    away a period another already paid for. The plan in force is that of the newest
    subscription that entitles at ``now`` (else of the one whose entitlement ended last).
    Subscriptions that never entitled anyone (unpaid checkouts) leave the row alone: the user
    keeps the plan the operator gave, if any. The quota period's anchor is set only when the
    row is made: moving it would split the period in progress.
    """
    # The row's lock first: two changes to the user's subscriptions project one after the other,
    # the second seeing the first's subscription.
    row = session.scalar(
        select(Subscription).where(Subscription.user_id == user_id).with_for_update()
    )
    subs = session.scalars(newest_first(user_id))
    ends = [(sub, until) for sub in subs if (until := entitlement_end(sub, grace)) is not None]
    if not ends:
        return
    until = max(end for _, end in ends)
    in_force = next((sub for sub, end in ends if end > now), None)
    source = in_force or next(sub for sub, end in ends if end == until)
    if row is None:
        start = source.current_period_start or source.created_at
        row = Subscription(user_id=user_id, period_anchor=start, created_at=source.created_at)
        session.add(row)
    row.plan_id = source.plan_id
    row.status = "active"
    row.entitled_until = until
    session.flush()


def entitled_now(session: Session, user_id: str, now: datetime) -> bool:
    """Whether the hot paths see a plan in force for ``user_id`` at ``now`` (for tests and the
    status view; the hot paths use their own prepared statements)."""
    row = session.scalar(select(Subscription).where(Subscription.user_id == user_id))
    return (
        row is not None
        and row.status == "active"
        and (row.entitled_until is None or row.entitled_until > now)
    )
