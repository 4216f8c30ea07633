"""Expired holds: finding and releasing them on the ORM path (the rare path of a reserve or a
settle, the sweeper and the license read all release them before anything else)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from ...models import Reservation, UsagePeriod
from ..periods import remaining
from .statements import EXPIRED, HELD


def lock_period(session: Session, period_id: str) -> UsagePeriod:
    period = session.scalar(
        select(UsagePeriod)
        .where(UsagePeriod.id == period_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    assert period is not None
    return period


_EXPIRED_HOLD = (
    select(Reservation.id)
    .where(
        Reservation.period_id == bindparam("period_id"),
        Reservation.status == HELD,
        Reservation.expires_at <= bindparam("now"),
    )
    .limit(1)
)


def has_expired_holds(session: Session, period: UsagePeriod, now: datetime) -> bool:
    return session.scalar(_EXPIRED_HOLD, {"period_id": period.id, "now": now}) is not None


def release_expired_holds(session: Session, period: UsagePeriod, now: datetime) -> int:
    """Release the expired holds of a period whose row lock the caller holds."""
    expired = list(
        session.scalars(
            select(Reservation)
            .where(
                Reservation.period_id == period.id,
                Reservation.status == HELD,
                Reservation.expires_at <= now,
            )
            .with_for_update()
        )
    )
    for r in expired:
        r.status = EXPIRED
        r.settled_at = now
        period.held -= r.messages
    left = remaining(period)
    for r in expired:
        r.remaining_after_settle = left
    if expired:
        session.flush()
    return len(expired)
