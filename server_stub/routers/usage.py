"""``/usage``: reserve, commit, rollback."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from agent.protocol import (
    CommitRequest,
    ErrorCode,
    ReservationResponse,
    ReservationStatus,
    ReserveRequest,
    RollbackRequest,
    SettleResponse,
)

from ..deps import PrincipalDep, ServicesDep, run_service
from ..problems import problem_responses
from ..services.reservations import ReservationRow

router = APIRouter(prefix="/usage", tags=["usage"])

_AUTH_ERRORS = (ErrorCode.TOKEN_INVALID, ErrorCode.TOKEN_EXPIRED, ErrorCode.FORBIDDEN)


def _settled(r: ReservationRow) -> SettleResponse:
    return SettleResponse(
        reservation_id=r.id,
        status=ReservationStatus(r.status),
        messages=r.messages,
        used=r.used,
        remaining=r.remaining_after_settle if r.remaining_after_settle is not None else 0,
    )


@router.post(
    "/reserve",
    status_code=status.HTTP_201_CREATED,
    response_model=ReservationResponse,
    responses={
        200: {
            "description": "Replay of an earlier reserve with the same correlation_id",
            "model": ReservationResponse,
        },
        **problem_responses(
            *_AUTH_ERRORS,
            ErrorCode.LICENSE_INACTIVE,
            ErrorCode.QUOTA_EXCEEDED,
            ErrorCode.IDEMPOTENCY_CONFLICT,
        ),
    },
    summary="Hold quota for a batch of messages (idempotent by correlation_id)",
)
async def reserve(
    body: ReserveRequest, principal: PrincipalDep, services: ServicesDep, response: Response
) -> ReservationResponse:
    result = await run_service(
        services,
        services.reservations.reserve,
        principal.user.id,
        body.messages,
        body.correlation_id,
    )
    r = result.reservation
    if not result.created:
        response.status_code = status.HTTP_200_OK
    return ReservationResponse(
        reservation_id=r.id,
        messages=r.messages,
        expires_at=r.expires_at,
        remaining=r.remaining_after_reserve,
        status=ReservationStatus(r.status),
    )


@router.post(
    "/commit",
    response_model=SettleResponse,
    responses=problem_responses(
        *_AUTH_ERRORS,
        ErrorCode.NOT_FOUND,
        ErrorCode.RESERVATION_CONFLICT,
        ErrorCode.RESERVATION_EXPIRED,
    ),
    summary="Count the messages really sent and release the rest (idempotent)",
)
async def commit(
    body: CommitRequest, principal: PrincipalDep, services: ServicesDep
) -> SettleResponse:
    settle = services.reservations.commit
    return _settled(
        await run_service(services, settle, principal.user.id, body.reservation_id, body.used)
    )


@router.post(
    "/rollback",
    response_model=SettleResponse,
    responses=problem_responses(*_AUTH_ERRORS, ErrorCode.NOT_FOUND, ErrorCode.RESERVATION_CONFLICT),
    summary="Release the whole hold (idempotent)",
)
async def rollback(
    body: RollbackRequest, principal: PrincipalDep, services: ServicesDep
) -> SettleResponse:
    settle = services.reservations.rollback
    return _settled(await run_service(services, settle, principal.user.id, body.reservation_id))
