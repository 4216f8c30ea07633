"""``/staff/points/{user_id}``: an operator's view of a points wallet and the adjustment
(docs/points.md). Reading is ``points.read``; adjusting is ``points.adjust`` (Admin only), needs a
reason, is booked in the ledger like any other change and written to the audit log."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from agent.protocol import (
    ErrorCode,
    PointsAdjusted,
    PointsAdjustRequest,
    PointsBalance,
    PointsHistory,
    Rfc3339DateTime,
)

from ..deps import ServicesDep
from ..services.points.history import MAX_PAGE
from ..services.staff import Permission
from .points import Cursor, balance_out, entry_out, history_out
from .staff_auth import StaffDep, staff_endpoint

router = APIRouter(prefix="/staff/points", tags=["points"])

UserId = Annotated[str, Path(pattern=r"^[A-Za-z0-9-]{1,64}$")]


@staff_endpoint(
    router,
    "GET",
    "/{user_id}/balance",
    Permission.POINTS_READ,
    response_model=PointsBalance,
    summary="A user's points balance",
)
def staff_points_balance(user_id: UserId, services: ServicesDep) -> PointsBalance:
    return balance_out(services.points.balance(user_id))


@staff_endpoint(
    router,
    "GET",
    "/{user_id}/history",
    Permission.POINTS_READ,
    ErrorCode.VALIDATION_ERROR,
    response_model=PointsHistory,
    summary="A user's points history, newest first",
)
def staff_points_history(
    user_id: UserId,
    services: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    cursor: Cursor = None,
    since: Rfc3339DateTime | None = None,
    until: Rfc3339DateTime | None = None,
) -> PointsHistory:
    page = services.points.history(user_id, limit=limit, cursor=cursor, since=since, until=until)
    return history_out(page)


@staff_endpoint(
    router,
    "POST",
    "/{user_id}/adjust",
    Permission.POINTS_ADJUST,
    ErrorCode.NOT_FOUND,
    ErrorCode.VALIDATION_ERROR,
    ErrorCode.INSUFFICIENT_POINTS,
    ErrorCode.IDEMPOTENCY_CONFLICT,
    response_model=PointsAdjusted,
    summary="Add or take away points with a reason (Admin); never below zero",
)
def staff_points_adjust(
    user_id: UserId, body: PointsAdjustRequest, principal: StaffDep, services: ServicesDep
) -> PointsAdjusted:
    done = services.points.adjust(
        user_id,
        body.delta,
        reason=body.reason,
        actor=principal.actor,
        idempotency_key=body.idempotency_key,
    )
    assert done.entry is not None
    return PointsAdjusted(
        entry=entry_out(done.entry), balance=balance_out(done.balance), replayed=done.replayed
    )
