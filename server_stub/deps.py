"""FastAPI dependencies: the services, the clock and the authenticated caller."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, ParamSpec, TypeVar

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from .errors import TokenInvalid
from .ratelimit import ACCESS_CLAIMS_STATE
from .services.auth import Principal
from .wiring import Services

P = ParamSpec("P")
T = TypeVar("T")

_bearer = HTTPBearer(auto_error=False, description="RS256 access token from /auth/login")


# The dependencies and the hot handlers are ``async def``: FastAPI runs a ``def`` dependency or
# endpoint (and then the response validation) in the thread pool, one hand-off each, and those
# hand-offs cost more than the work. A hot handler makes at most one: ``run_service``.


async def run_service(
    services: Services, call: Callable[P, T], *args: P.args, **kwargs: P.kwargs
) -> T:
    """Run a service call that writes: on the event loop for SQLite, in the thread pool for
    PostgreSQL.

    SQLite statements take microseconds and its commits do not wait for the disk (WAL with
    ``synchronous=NORMAL``), so a hand-off would cost more than the call. A PostgreSQL commit
    waits for its WAL flush: on the loop it would stall every other request, while in threads
    commits overlap (the database groups their flushes). One hand-off per request, not four.
    Reads (one round trip, no commit) run on the loop on both.
    """
    if services.ctx.inline_database:
        return call(*args, **kwargs)
    return await run_in_threadpool(call, *args, **kwargs)


async def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


async def current_principal(
    request: Request,
    services: ServicesDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    # ``credentials`` is declared for the OpenAPI schema (the bearer scheme); the header is read
    # by ``request_principal``, the one rule for routes with and without dependencies.
    del credentials
    return request_principal(request, services)


def request_principal(request: Request, services: Services) -> Principal:
    """The caller of ``request``, from its bearer token (as ``HTTPBearer`` parses the header)."""
    scheme, _, token = (request.headers.get("authorization") or "").partition(" ")
    token = token.strip()
    if not (scheme and token) or scheme.lower() != "bearer":
        raise TokenInvalid("a bearer access token is required")
    verified = getattr(request.state, ACCESS_CLAIMS_STATE, None)
    claims = verified[1] if verified and verified[0] == token else None
    return services.auth.authenticate(token, claims)


PrincipalDep = Annotated[Principal, Depends(current_principal)]
