"""Staff authentication and permissions for every operator router (``/staff/...``, and the
seed paths staff call such as ``POST /licenses/revoke``).

:func:`staff_endpoint` registers a route that names its permission (``x-permission`` in the
OpenAPI document); the dependency :func:`require` enforces it before the body is even read, from
the one table in ``services.staff.permissions``. The role-matrix test walks every route that
carries ``x-permission``, whichever router it is on.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from agent.protocol import ErrorCode

from ..errors import TokenInvalid
from ..problems import AUTH_ERRORS, problem_responses
from ..services.staff import Permission, StaffPrincipal
from ..services.staff.sessions import StaffSessions

_bearer = HTTPBearer(auto_error=False, description="RS256 staff token from /staff/login")

#: The ``x-permission`` of the endpoints that take no staff token.
PUBLIC = "public"
PERMISSION_KEY = "x-permission"


def current_staff(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> StaffPrincipal:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise TokenInvalid("a bearer staff token is required")
    principal: StaffPrincipal = request.app.state.services.staff.authenticate(
        credentials.credentials
    )
    return principal


StaffDep = Annotated[StaffPrincipal, Depends(current_staff)]


def require(permission: Permission) -> Callable[[StaffPrincipal], StaffPrincipal]:
    def check(principal: StaffDep) -> StaffPrincipal:
        StaffSessions.authorize(principal, permission)
        return principal

    return check


def staff_endpoint(
    router: APIRouter,
    method: str,
    path: str,
    permission: Permission | None,
    *codes: ErrorCode,
    **kwargs: Any,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a route on ``router`` that names its permission (``None``: public)."""
    return router.api_route(
        path,
        methods=[method],
        dependencies=[Depends(require(permission))] if permission is not None else [],
        openapi_extra={
            **kwargs.pop("openapi_extra", {}),
            PERMISSION_KEY: permission.value if permission is not None else PUBLIC,
        },
        responses={
            **problem_responses(*AUTH_ERRORS, *codes),
            **kwargs.pop("responses", {}),
        },
        **kwargs,
    )
