"""``/usage``: reserve, commit, rollback."""

from __future__ import annotations

from typing import TypeVar

from fastapi import APIRouter, Request, Response, status
from pydantic import BaseModel

from agent.protocol import (
    CommitRequest,
    ErrorCode,
    ReservationResponse,
    ReservationStatus,
    ReserveRequest,
    RollbackRequest,
    SettleResponse,
)

from ..deps import PrincipalDep, ServicesDep, request_principal, run_service
from ..fast_path import FastPathRoute, fast_path, json_body, json_response
from ..problems import AUTH_ERRORS, problem_responses
from ..services.auth import Principal
from ..services.reservations import ReservationRow
from ..wiring import Services

router = APIRouter(prefix="/usage", tags=["usage"], route_class=FastPathRoute)

M = TypeVar("M", bound=BaseModel)


def _settled(r: ReservationRow) -> SettleResponse:
    return SettleResponse(
        reservation_id=r.id,
        status=ReservationStatus(r.status),
        messages=r.messages,
        used=r.used,
        remaining=r.remaining_after_settle if r.remaining_after_settle is not None else 0,
    )


async def _reserve(
    services: Services, principal: Principal, body: ReserveRequest
) -> tuple[ReservationResponse, int]:
    result = await run_service(
        services,
        services.reservations.reserve,
        principal.user.id,
        body.messages,
        body.correlation_id,
    )
    r = result.reservation
    reply = ReservationResponse(
        reservation_id=r.id,
        messages=r.messages,
        expires_at=r.expires_at,
        remaining=r.remaining_after_reserve,
        status=ReservationStatus(r.status),
    )
    return reply, status.HTTP_201_CREATED if result.created else status.HTTP_200_OK


async def _authenticated_body(
    request: Request, model: type[M]
) -> tuple[Services, Principal, M] | None:
    """The services, the caller and the body; ``None`` for FastAPI's handler to answer."""
    services: Services = request.app.state.services
    # Authentication first, as the dependencies would: no token is 401 whatever the body.
    principal = request_principal(request, services)
    body = await json_body(request, model)
    return None if body is None else (services, principal, body)


async def _fast_reserve(request: Request) -> Response | None:
    call = await _authenticated_body(request, ReserveRequest)
    return None if call is None else json_response(*await _reserve(*call))


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
            *AUTH_ERRORS,
            ErrorCode.LICENSE_INACTIVE,
            ErrorCode.QUOTA_EXCEEDED,
            ErrorCode.IDEMPOTENCY_CONFLICT,
        ),
    },
    summary="Hold quota for a batch of messages (idempotent by correlation_id)",
)
@fast_path(_fast_reserve)
async def reserve(
    body: ReserveRequest, principal: PrincipalDep, services: ServicesDep, response: Response
) -> ReservationResponse:
    # Served by ``_fast_reserve`` (fast_path.py) unless the body is not plainly valid.
    reply, response.status_code = await _reserve(services, principal, body)
    return reply


async def _commit(services: Services, principal: Principal, body: CommitRequest) -> SettleResponse:
    settle = services.reservations.commit
    return _settled(
        await run_service(services, settle, principal.user.id, body.reservation_id, body.used)
    )


async def _fast_commit(request: Request) -> Response | None:
    call = await _authenticated_body(request, CommitRequest)
    return None if call is None else json_response(await _commit(*call))


@router.post(
    "/commit",
    response_model=SettleResponse,
    responses=problem_responses(
        *AUTH_ERRORS,
        ErrorCode.NOT_FOUND,
        ErrorCode.RESERVATION_CONFLICT,
        ErrorCode.RESERVATION_EXPIRED,
    ),
    summary="Count the messages really sent and release the rest (idempotent)",
)
@fast_path(_fast_commit)
async def commit(
    body: CommitRequest, principal: PrincipalDep, services: ServicesDep
) -> SettleResponse:
    # Served by ``_fast_commit`` (fast_path.py) unless the body is not plainly valid.
    return await _commit(services, principal, body)


@router.post(
    "/rollback",
    response_model=SettleResponse,
    responses=problem_responses(*AUTH_ERRORS, ErrorCode.NOT_FOUND, ErrorCode.RESERVATION_CONFLICT),
    summary="Release the whole hold (idempotent)",
)
async def rollback(
    body: RollbackRequest, principal: PrincipalDep, services: ServicesDep
) -> SettleResponse:
    settle = services.reservations.rollback
    return _settled(await run_service(services, settle, principal.user.id, body.reservation_id))
