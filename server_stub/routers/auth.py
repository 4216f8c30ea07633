"""``/auth``: register, login, refresh, logout."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from agent.protocol import (
    ErrorCode,
    LoginRequest,
    LogoutRequest,
    RefreshRequest,
    RegisterRequest,
    TokenResponse,
    UserOut,
)

from ..deps import PrincipalDep, ServicesDep
from ..problems import problem_responses
from ..services.auth import IssuedTokens

router = APIRouter(prefix="/auth", tags=["auth"])


def _token_response(issued: IssuedTokens) -> TokenResponse:
    return TokenResponse(
        token=issued.access_token,
        refresh_token=issued.refresh_token,
        refresh_expires_at=issued.refresh_expires_at,
        exp=issued.access_exp,
        user=UserOut(id=issued.user.id, email=issued.user.email, created_at=issued.user.created_at),
    )


@router.post(
    "/register",
    status_code=status.HTTP_201_CREATED,
    response_model=TokenResponse,
    responses=problem_responses(ErrorCode.ALREADY_EXISTS, ErrorCode.DEVICE_LIMIT),
    summary="Create an account and log in on this device",
)
def register(body: RegisterRequest, services: ServicesDep) -> TokenResponse:
    return _token_response(
        services.auth.register(body.email, body.password, body.device_fingerprint, body.device_name)
    )


@router.post(
    "/login",
    response_model=TokenResponse,
    responses=problem_responses(
        ErrorCode.INVALID_CREDENTIALS, ErrorCode.DEVICE_LIMIT, ErrorCode.FORBIDDEN
    ),
    summary="Log in and bind this device",
)
def login(body: LoginRequest, services: ServicesDep) -> TokenResponse:
    return _token_response(
        services.auth.login(body.email, body.password, body.device_fingerprint, body.device_name)
    )


@router.post(
    "/refresh",
    response_model=TokenResponse,
    responses=problem_responses(
        ErrorCode.TOKEN_INVALID, ErrorCode.TOKEN_EXPIRED, ErrorCode.FORBIDDEN
    ),
    summary="Exchange a refresh token (single use) for new tokens",
)
def refresh(body: RefreshRequest, services: ServicesDep) -> TokenResponse:
    return _token_response(services.auth.refresh(body.refresh_token, body.device_fingerprint))


@router.post(
    "/logout",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=problem_responses(ErrorCode.TOKEN_INVALID, ErrorCode.TOKEN_EXPIRED),
    summary="End this session (and the session of the given refresh token)",
)
def logout(
    principal: PrincipalDep, services: ServicesDep, body: LogoutRequest | None = None
) -> Response:
    services.auth.logout(principal, body.refresh_token if body else None)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
