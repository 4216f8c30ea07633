"""Subscriptions and monthly quota periods."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, bindparam, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from ..models import Plan, Subscription, UsagePeriod, new_id
from .billing.calendar import period_containing
from .billing.contract import Interval


@dataclass(frozen=True)
class ActivePlan:
    subscription: Subscription
    plan: Plan


def period_bounds(anchor: datetime, now: datetime) -> tuple[datetime, datetime]:
    """The monthly quota period around ``now`` that starts on ``anchor``'s day of the month.
    The quota resets monthly whatever the plan's billing interval (a yearly plan still has a
    monthly quota)."""
    return period_containing(anchor, Interval.MONTH, now)


@functools.lru_cache(maxsize=4096)
def is_anchored_period(anchor: datetime, start: datetime, end: datetime) -> bool:
    """Whether ``[start, end)`` is one of the monthly periods of ``anchor`` (cached: the hot
    paths find the period that contains *now* and check it is the subscription's own)."""
    return period_bounds(anchor, start) == (start, end)


def entitled(subscriptions: Any) -> ColumnElement[bool]:
    """The one rule of whether a user's plan is in force at ``:now``: its status is active and
    billing's paid-through end (with grace) is still ahead, or it has none (an operator-assigned
    plan). ``subscriptions`` is the table or its ORM class."""
    c = subscriptions.c if hasattr(subscriptions, "c") else subscriptions
    return (c.status == "active") & or_(
        c.entitled_until.is_(None), c.entitled_until > bindparam("now")
    )


# Hot-path statements are built once: building them per call costs more than running them.
_ACTIVE_PLAN = (
    select(Subscription, Plan)
    .join(Plan, Plan.id == Subscription.plan_id)
    .where(Subscription.user_id == bindparam("user_id"), entitled(Subscription))
)
_PERIOD = select(UsagePeriod).where(
    UsagePeriod.user_id == bindparam("user_id"), UsagePeriod.period_start == bindparam("start")
)


def active_plan(session: Session, user_id: str, now: datetime) -> ActivePlan | None:
    row = session.execute(_ACTIVE_PLAN, {"user_id": user_id, "now": now}).first()
    return ActivePlan(subscription=row[0], plan=row[1]) if row else None


def subscribe(session: Session, user_id: str, plan: Plan, now: datetime) -> Subscription:
    sub = session.scalar(select(Subscription).where(Subscription.user_id == user_id))
    if sub is None:
        sub = Subscription(user_id=user_id, plan_id=plan.id, period_anchor=now, created_at=now)
        session.add(sub)
    else:
        sub.plan_id = plan.id
        sub.status = "active"
    # The operator's assignment is not billing's: it lasts until the operator changes it.
    sub.entitled_until = None
    session.flush()
    return sub


def find_period(session: Session, active: ActivePlan, now: datetime) -> UsagePeriod | None:
    """The user's period for ``now`` if it exists already (no lock, no insert)."""
    start, _ = period_bounds(active.subscription.period_anchor, now)
    return session.scalar(_PERIOD, {"user_id": active.subscription.user_id, "start": start})


def current_period(
    session: Session, active: ActivePlan, now: datetime, *, lock: bool
) -> UsagePeriod:
    """The user's period for ``now``, created on first use; row-locked when ``lock``."""
    sub = active.subscription
    start, end = period_bounds(sub.period_anchor, now)
    query = select(UsagePeriod).where(
        UsagePeriod.user_id == sub.user_id, UsagePeriod.period_start == start
    )
    if lock:
        query = query.with_for_update()
    period = session.scalar(query)
    if period is not None:
        return period
    values = {
        "id": new_id(),
        "user_id": sub.user_id,
        "period_start": start,
        "period_end": end,
        "quota_limit": active.plan.monthly_quota,
        "used": 0,
        "held": 0,
    }
    # Two first requests of a period may race to create it: the loser's insert is a no-op.
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    session.execute(
        dialect.insert(UsagePeriod)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["user_id", "period_start"])
    )
    period = session.scalar(query.execution_options(populate_existing=True))
    assert period is not None
    return period


def remaining(period: UsagePeriod) -> int:
    return max(period.quota_limit - period.used - period.held, 0)
