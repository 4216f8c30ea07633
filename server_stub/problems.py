"""RFC 9457 problem-details responses and the exception handlers that produce them."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from agent.protocol import ERROR_STATUS, PROBLEM_CONTENT_TYPE, ErrorCode, Problem

from .errors import DomainError

log = logging.getLogger("tgflow.server.errors")

_TITLES = {
    ErrorCode.NOT_FOUND: "Not found",
    ErrorCode.METHOD_NOT_ALLOWED: "Method not allowed",
    ErrorCode.VALIDATION_ERROR: "Invalid request",
    ErrorCode.PAYLOAD_TOO_LARGE: "Request body too large",
    ErrorCode.SERVICE_UNAVAILABLE: "Service unavailable",
    ErrorCode.INTERNAL_ERROR: "Internal error",
    ErrorCode.RATE_LIMITED: "Too many requests",
    ErrorCode.TOKEN_INVALID: "Invalid token",
}


def problem_response(
    code: ErrorCode,
    detail: str,
    *,
    title: str | None = None,
    instance: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    status = ERROR_STATUS[code]
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": title or _TITLES.get(code, code.value.replace("_", " ").capitalize()),
        "status": status,
        "detail": detail,
        "code": code.value,
    }
    if instance:
        body["instance"] = instance
    body.update(extra)
    all_headers = {"Cache-Control": "no-store", **(headers or {})}
    if status == 401:
        all_headers.setdefault("WWW-Authenticate", 'Bearer error="invalid_token"')
    return JSONResponse(
        body, status_code=status, headers=all_headers, media_type=PROBLEM_CONTENT_TYPE
    )


def _validation_issues(errors: Iterable[Any]) -> list[dict[str, Any]]:
    issues = []
    for err in errors:
        loc = [p if isinstance(p, int) else str(p) for p in err.get("loc", ())]
        # Never echo the rejected input back: it may be a password.
        issues.append(
            {"loc": loc, "msg": str(err.get("msg", "")), "type": str(err.get("type", ""))}
        )
    return issues


def domain_problem(exc: DomainError, instance: str) -> JSONResponse:
    """The problem-details answer to a domain error (the handler's, and what an idempotent
    request stores as its first response)."""
    return problem_response(
        exc.code, exc.detail, title=exc.title, instance=instance, headers=exc.headers, **exc.extra
    )


async def _domain_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DomainError)
    return domain_problem(exc, request.url.path)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    issues = _validation_issues(exc.errors())
    where = ", ".join(".".join(str(p) for p in i["loc"]) for i in issues[:5])
    return problem_response(
        ErrorCode.VALIDATION_ERROR,
        f"the request is not valid: {where}" if where else "the request is not valid",
        instance=request.url.path,
        errors=issues,
    )


def _allowed_methods(request: Request) -> set[str]:
    """Every method some route serves at this path.

    Starlette names only the first route whose path matches; a path served by several routes
    (``GET`` and ``POST /staff/accounts``, one handler each) needs them all in ``Allow``.
    """
    methods: set[str] = set()
    routes: list[Any] = list(request.app.router.routes)
    while routes:
        route = routes.pop()
        # FastAPI keeps an included router as one entry; its routes carry the full path.
        nested = getattr(getattr(route, "original_router", None), "routes", None)
        if nested is not None:
            routes.extend(nested)
        elif route.matches(dict(request.scope))[0] is Match.PARTIAL:
            methods |= set(getattr(route, "methods", None) or ())
    return methods


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    headers = dict(exc.headers or {})
    if exc.status_code == 404:
        return problem_response(
            ErrorCode.NOT_FOUND, f"nothing at {request.url.path}", instance=request.url.path
        )
    if exc.status_code == 405:
        allowed = _allowed_methods(request)
        if allowed:
            headers["Allow"] = ", ".join(sorted(allowed))
        return problem_response(
            ErrorCode.METHOD_NOT_ALLOWED,
            f"{request.method} is not allowed on {request.url.path}",
            instance=request.url.path,
            headers=headers,
        )
    if exc.status_code == 413:
        return problem_response(ErrorCode.PAYLOAD_TOO_LARGE, str(exc.detail))
    if exc.status_code in (401, 403):
        return problem_response(ErrorCode.TOKEN_INVALID, "a bearer access token is required")
    code = ErrorCode.VALIDATION_ERROR if exc.status_code < 500 else ErrorCode.INTERNAL_ERROR
    return problem_response(code, str(exc.detail), instance=request.url.path)


async def _database_error(request: Request, exc: Exception) -> JSONResponse:
    log.error("database error", extra={"path": request.url.path, "error": type(exc).__name__})
    return problem_response(
        ErrorCode.SERVICE_UNAVAILABLE,
        "the database is unavailable or busy; try again shortly",
        headers={"Retry-After": "1"},
    )


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error", extra={"path": request.url.path})
    return problem_response(ErrorCode.INTERNAL_ERROR, "an unexpected error occurred")


def install_handlers(app: FastAPI) -> None:
    app.add_exception_handler(DomainError, _domain_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(DBAPIError, _database_error)
    app.add_exception_handler(Exception, _unexpected)


#: What any route that takes input can answer besides its own errors: invalid input, the rate
#: limiter, the body-size cap and an unavailable database.
_COMMON_CODES = (
    ErrorCode.VALIDATION_ERROR,
    ErrorCode.RATE_LIMITED,
    ErrorCode.PAYLOAD_TOO_LARGE,
    ErrorCode.SERVICE_UNAVAILABLE,
)


#: What a route behind the customer's bearer token may answer about the token itself.
AUTH_ERRORS = (ErrorCode.TOKEN_INVALID, ErrorCode.TOKEN_EXPIRED, ErrorCode.FORBIDDEN)


def problem_responses(*codes: ErrorCode, common: bool = True) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` entries documenting problem-details errors.

    ``common=False`` documents ``codes`` alone, for routes that take no input and name the edge
    answers (rate limiter, body-size cap, database) that apply to them.
    """
    wanted = {*codes, *(_COMMON_CODES if common else ())}
    by_status: dict[int, list[str]] = {}
    for code in wanted:
        by_status.setdefault(ERROR_STATUS[code], []).append(code.value)
    responses: dict[int | str, dict[str, Any]] = {
        status: {
            "model": Problem,
            "description": "Problem details; code: " + ", ".join(sorted(names)),
        }
        for status, names in sorted(by_status.items())
    }
    if 429 in responses:
        responses[429]["headers"] = {
            "Retry-After": {
                "description": "Seconds until the limit admits another request",
                "required": True,
                "schema": {"type": "integer", "minimum": 1},
            }
        }
    return responses
