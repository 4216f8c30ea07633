"""FastAPI dependencies: the services, the clock and the authenticated caller."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from .errors import TokenInvalid
from .ratelimit import ACCESS_CLAIMS_STATE
from .services.auth import Principal
from .wiring import Services

_bearer = HTTPBearer(auto_error=False, description="RS256 access token from /auth/login")


# The dependencies and the hot handlers are ``async def``: FastAPI runs a ``def`` dependency or
# endpoint (and then the response validation) in the thread pool, one hand-off each, and those
# hand-offs cost more than the work. What they run on the loop is a few short indexed statements
# (microseconds on SQLite, one round trip each on PostgreSQL) and no waiting on anything slow.


async def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


async def current_principal(
    request: Request,
    services: ServicesDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise TokenInvalid("a bearer access token is required")
    token = credentials.credentials
    verified = getattr(request.state, ACCESS_CLAIMS_STATE, None)
    claims = verified[1] if verified and verified[0] == token else None
    return services.auth.authenticate(token, claims)


PrincipalDep = Annotated[Principal, Depends(current_principal)]
