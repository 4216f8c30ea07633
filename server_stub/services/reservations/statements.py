"""The reservations' SQL: the hot paths' Core statements, built once at import (a reserve runs 5
of them, a commit 4), and the statuses they test.

A reserve first *claims* its ``correlation_id`` with :func:`claim_statement`; holds are taken with
the conditional ``UPDATE`` :data:`TAKE_HOLD`, which keeps ``used + held <= quota_limit`` (see the
package's docstring).
"""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import Exists, Table, bindparam, exists, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from agent.protocol import ReservationStatus

from ...models import IdempotencyKey, Plan, Reservation, Subscription, UsagePeriod
from ..periods import entitled

HELD = ReservationStatus.HELD.value
COMMITTED = ReservationStatus.COMMITTED.value
ROLLED_BACK = ReservationStatus.ROLLED_BACK.value
EXPIRED = ReservationStatus.EXPIRED.value


_keys = cast(Table, IdempotencyKey.__table__)
_reservations = cast(Table, Reservation.__table__)
_periods = cast(Table, UsagePeriod.__table__)
_subscriptions = cast(Table, Subscription.__table__)
_plans = cast(Table, Plan.__table__)


def expired_hold_exists(period_id: Any) -> Exists:
    """``EXISTS`` an expired hold in the period: then it is released before anything else."""
    r = _reservations.c
    return exists().where(
        r.period_id == period_id, r.status == HELD, r.expires_at <= bindparam("now")
    )


#: The user's active plan and the period that contains ``now`` (if made yet), in one read.
RESERVE_CONTEXT = (
    select(
        _subscriptions.c.period_anchor,
        _periods.c.id.label("period_id"),
        _periods.c.period_start,
        _periods.c.period_end,
        expired_hold_exists(_periods.c.id).label("stale"),
    )
    .select_from(_subscriptions)
    .join(_plans, _plans.c.id == _subscriptions.c.plan_id)
    .outerjoin(
        _periods,
        (_periods.c.user_id == _subscriptions.c.user_id)
        & (_periods.c.period_start <= bindparam("now"))
        & (_periods.c.period_end > bindparam("now")),
    )
    .where(_subscriptions.c.user_id == bindparam("user_id"), entitled(_subscriptions))
)
KEY = select(
    _keys.c.request_hash,
    _keys.c.reservation_id,
    _keys.c.refused_detail,
    _keys.c.refused_remaining,
).where(_keys.c.user_id == bindparam("user_id"), _keys.c.key == bindparam("key"))
TAKE_HOLD = (
    update(_periods)
    .where(
        _periods.c.id == bindparam("period_id"),
        _periods.c.used + _periods.c.held + bindparam("messages") <= _periods.c.quota_limit,
    )
    .values(held=_periods.c.held + bindparam("messages"))
    .returning(_periods.c.used, _periods.c.held, _periods.c.quota_limit)
)
COUNTERS = select(_periods.c.used, _periods.c.held, _periods.c.quota_limit).where(
    _periods.c.id == bindparam("period_id")
)
RECORD_OUTCOME = (
    update(_keys)
    .where(_keys.c.user_id == bindparam("b_user_id"), _keys.c.key == bindparam("b_key"))
    .values(
        reservation_id=bindparam("b_reservation_id"),
        refused_detail=bindparam("b_detail"),
        refused_remaining=bindparam("b_remaining"),
    )
)
INSERT_RESERVATION = insert(_reservations)
ROW_COLUMNS = (
    _reservations.c.id,
    _reservations.c.messages,
    _reservations.c.status,
    _reservations.c.used,
    _reservations.c.expires_at,
    _reservations.c.remaining_after_reserve,
    _reservations.c.remaining_after_settle,
)
RESERVATION = select(*ROW_COLUMNS).where(_reservations.c.id == bindparam("id"))
SETTLE_CONTEXT = select(
    *ROW_COLUMNS,
    _reservations.c.period_id,
    expired_hold_exists(_reservations.c.period_id).label("stale"),
).where(_reservations.c.id == bindparam("id"), _reservations.c.user_id == bindparam("user_id"))
#: The period's lock comes first, as everywhere (then the reservation's).
LOCK_COUNTERS = COUNTERS.with_for_update()
SETTLE_PERIOD = (
    update(_periods)
    .where(_periods.c.id == bindparam("period_id"))
    .values(
        held=_periods.c.held - bindparam("messages"), used=_periods.c.used + bindparam("b_used")
    )
)
SETTLE_RESERVATION = (
    update(_reservations)
    .where(_reservations.c.id == bindparam("b_id"), _reservations.c.status == HELD)
    .values(
        status=bindparam("b_status"),
        used=bindparam("b_used"),
        settled_at=bindparam("b_now"),
        remaining_after_settle=bindparam("b_left"),
    )
    .returning(*ROW_COLUMNS)
)


def claim_statement(dialect: str) -> Any:
    """Claim a correlation_id: insert its key, or take over one whose window has passed.

    Returns a row only to the claimer. On PostgreSQL a concurrent claim of the same id makes
    this wait until the other transaction ends, then return nothing: one outcome per id.
    """
    ins = (postgresql if dialect == "postgresql" else sqlite).insert(_keys)
    return ins.on_conflict_do_update(
        index_elements=[_keys.c.user_id, _keys.c.key],
        set_={
            "request_hash": ins.excluded.request_hash,
            "reservation_id": None,
            "refused_detail": None,
            "refused_remaining": None,
            "expires_at": ins.excluded.expires_at,
        },
        where=_keys.c.expires_at <= bindparam("now"),
    ).returning(_keys.c.key)
