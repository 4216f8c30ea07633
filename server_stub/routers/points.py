"""``/points/...``: the customer's points wallet (docs/points.md). Thin: each route is one call
of the points service, which books it in one transaction before anything is answered, so a
client never sees a balance the server has not committed."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Path, Query, status

from agent.protocol import (
    ErrorCode,
    PointsBalance,
    PointsEntryOut,
    PointsHistory,
    PointsHoldCommit,
    PointsHoldOut,
    PointsHoldRequest,
    PointsHoldState,
    PointsKind,
    PointsSpendRequest,
    PointsSpent,
    Rfc3339DateTime,
    TopupOut,
    TopupQuota,
    TopupRequest,
)

from ..deps import PrincipalDep, ServicesDep
from ..problems import AUTH_ERRORS, problem_responses
from ..services.points.history import MAX_PAGE, HistoryPage
from ..services.points.views import Balance, Entry, HoldView

router = APIRouter(tags=["points"])

HoldId = Annotated[str, Path(pattern=r"^[A-Za-z0-9-]{1,64}$")]
Cursor = Annotated[str | None, Query(max_length=200, pattern=r"^[A-Za-z0-9_-]+$")]


def balance_out(balance: Balance) -> PointsBalance:
    return PointsBalance(balance=balance.balance, held=balance.held, shortfall=balance.shortfall)


def entry_out(entry: Entry) -> PointsEntryOut:
    return PointsEntryOut(
        id=entry.id,
        kind=PointsKind(entry.kind),
        amount=entry.amount,
        balance_after=entry.balance_after,
        reason=entry.reason,
        expires_at=entry.expires_at,
        created_at=entry.created_at,
    )


def history_out(page: HistoryPage) -> PointsHistory:
    return PointsHistory(entries=[entry_out(e) for e in page.entries], next_cursor=page.next_cursor)


def _hold_out(hold: HoldView) -> PointsHoldOut:
    return PointsHoldOut(
        id=hold.id,
        amount=hold.amount,
        used=hold.used,
        state=PointsHoldState(hold.state),
        expires_at=hold.expires_at,
        balance=balance_out(hold.balance),
        replayed=hold.replayed,
    )


@router.get(
    "/points/balance",
    response_model=PointsBalance,
    responses=problem_responses(*AUTH_ERRORS),
    summary="The points that can be spent, those on hold, and any owed after a store refund",
)
def points_balance(principal: PrincipalDep, services: ServicesDep) -> PointsBalance:
    return balance_out(services.points.balance(principal.user.id))


@router.get(
    "/points/history",
    response_model=PointsHistory,
    responses=problem_responses(*AUTH_ERRORS, ErrorCode.VALIDATION_ERROR),
    summary="Every change of the balance, newest first (a cursor for the next page)",
)
def points_history(
    principal: PrincipalDep,
    services: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    cursor: Cursor = None,
    kind: Annotated[list[PointsKind] | None, Query(max_length=12)] = None,
    since: Rfc3339DateTime | None = None,
    until: Rfc3339DateTime | None = None,
) -> PointsHistory:
    page = services.points.history(
        principal.user.id,
        limit=limit,
        cursor=cursor,
        kinds=frozenset(k.value for k in kind or ()),
        since=since,
        until=until,
    )
    return history_out(page)


@router.post(
    "/points/spend",
    response_model=PointsSpent,
    responses=problem_responses(
        *AUTH_ERRORS, ErrorCode.INSUFFICIENT_POINTS, ErrorCode.IDEMPOTENCY_CONFLICT
    ),
    summary="Spend points, once per idempotency key",
    description="Earliest-expiring points first. Not enough points, or points owed after a "
    "store refund: 409 `insufficient_points` and nothing is booked. The same request under "
    "the same key answers the first outcome (`replayed: true`); another request under it is "
    "409 `idempotency_conflict`.",
)
def points_spend(
    body: PointsSpendRequest, principal: PrincipalDep, services: ServicesDep
) -> PointsSpent:
    done = services.points.spend(
        principal.user.id, body.amount, idempotency_key=body.idempotency_key, reason=body.reason
    )
    assert done.entry is not None
    return PointsSpent(
        entry=entry_out(done.entry), balance=balance_out(done.balance), replayed=done.replayed
    )


@router.post(
    "/points/holds",
    status_code=status.HTTP_201_CREATED,
    response_model=PointsHoldOut,
    responses=problem_responses(
        *AUTH_ERRORS, ErrorCode.INSUFFICIENT_POINTS, ErrorCode.IDEMPOTENCY_CONFLICT
    ),
    summary="Set points aside for work that can fail; commit or release them afterwards",
    description="Held points leave the spendable balance until the hold is committed (spent), "
    "released (back), or expires (back; 15 minutes unless `ttl_seconds` says otherwise).",
)
def points_hold(
    body: PointsHoldRequest, principal: PrincipalDep, services: ServicesDep
) -> PointsHoldOut:
    ttl = timedelta(seconds=body.ttl_seconds) if body.ttl_seconds else None
    return _hold_out(
        services.points.hold(
            principal.user.id,
            body.amount,
            idempotency_key=body.idempotency_key,
            reason=body.reason,
            ttl=ttl,
        )
    )


_HOLD_ERRORS = problem_responses(
    *AUTH_ERRORS,
    ErrorCode.NOT_FOUND,
    ErrorCode.VALIDATION_ERROR,
    ErrorCode.RESERVATION_CONFLICT,
    ErrorCode.RESERVATION_EXPIRED,
)


@router.post(
    "/points/holds/{hold_id}/commit",
    response_model=PointsHoldOut,
    responses=_HOLD_ERRORS,
    summary="Spend what the work used of a hold (all by default); the rest goes back",
)
def points_commit(
    hold_id: HoldId,
    principal: PrincipalDep,
    services: ServicesDep,
    body: PointsHoldCommit | None = None,
) -> PointsHoldOut:
    used = body.used if body is not None else None
    return _hold_out(services.points.commit_hold(principal.user.id, hold_id, used))


@router.post(
    "/points/holds/{hold_id}/release",
    response_model=PointsHoldOut,
    responses=_HOLD_ERRORS,
    summary="Give a hold's points back to the wallet",
)
def points_release(
    hold_id: HoldId, principal: PrincipalDep, services: ServicesDep
) -> PointsHoldOut:
    return _hold_out(services.points.release_hold(principal.user.id, hold_id))


@router.post(
    "/usage/topup",
    response_model=TopupOut,
    responses=problem_responses(
        *AUTH_ERRORS,
        ErrorCode.LICENSE_INACTIVE,
        ErrorCode.INSUFFICIENT_POINTS,
        ErrorCode.IDEMPOTENCY_CONFLICT,
        ErrorCode.VALIDATION_ERROR,
    ),
    summary="Buy extra messages of the current period with points (the plan's rate)",
    description="Points leave the wallet and the period's quota grows in one transaction. A "
    "plan that sells no messages is 422; no license is 403 `license_inactive`; the same key "
    "again answers the first outcome.",
)
def usage_topup(body: TopupRequest, principal: PrincipalDep, services: ServicesDep) -> TopupOut:
    done = services.points.topup(
        principal.user.id, body.points, idempotency_key=body.idempotency_key
    )
    assert done.outcome.entry is not None
    return TopupOut(
        entry=entry_out(done.outcome.entry),
        balance=balance_out(done.outcome.balance),
        messages=done.messages,
        quota=TopupQuota(
            limit=done.quota_limit, remaining=done.quota_remaining, period_end=done.period_end
        ),
        replayed=done.outcome.replayed,
    )
