"""``/licenses``: the product API an on-prem installation calls (docs/licensing.md, "Product
API"). No bearer token: the license key is the installation's credential, so these routes meet
the per-IP rate limit. The staff's ``/licenses/revoke`` and the public revocation list live on
their own router, included before this one (``/licenses/{license_key}`` would shadow them).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Annotated, TypeVar

from fastapi import APIRouter, Path, Request, Response
from pydantic import BaseModel
from starlette.convertors import StringConvertor, register_url_convertor

from agent.protocol import (
    LICENSE_KEY_PATTERN,
    ActivateRequest,
    ActivateResponse,
    ErrorCode,
    HeartbeatRequest,
    HeartbeatResponse,
    LicenseStatusResponse,
)

from ..deps import ServicesDep, run_service
from ..fast_path import FastHandler, FastPathRoute, fast_path, json_body, json_response
from ..middleware import client_address
from ..problems import problem_responses
from ..wiring import Services

router = APIRouter(prefix="/licenses", tags=["licensing"], route_class=FastPathRoute)


class _LicenseKeyConvertor(StringConvertor):
    """Matches only what can be a license key, so ``/licenses/activate``, ``/licenses/revoke``
    and ``/licenses/revocation-list`` are never taken for one (whatever the router order), and
    ``Allow`` on those paths names only their own methods."""

    regex = LICENSE_KEY_PATTERN.removeprefix("^").removesuffix("$")


register_url_convertor("license_key", _LicenseKeyConvertor())


def _ip(request: Request, services: Services) -> str:
    # The same address the per-IP rate limit sees (X-Forwarded-For only when trusted).
    return client_address(
        request.scope, trust_forwarded_for=services.ctx.settings.trust_forwarded_for
    )


async def _activate(services: Services, body: ActivateRequest, ip: str) -> ActivateResponse:
    done = await run_service(services, services.activations.activate, body, ip)
    return ActivateResponse.model_validate(asdict(done))


B = TypeVar("B", ActivateRequest, HeartbeatRequest)


def _fast(
    model: type[B], answer: Callable[[Services, B, str], Awaitable[BaseModel]]
) -> FastHandler:
    """The fast path (fast_path.py) of a product route: the body, the address, the answer."""

    async def handler(request: Request) -> Response | None:
        services: Services = request.app.state.services
        body = await json_body(request, model)
        if body is None:
            return None
        return json_response(await answer(services, body, _ip(request, services)))

    return handler


@router.post(
    "/activate",
    response_model=ActivateResponse,
    responses=problem_responses(
        ErrorCode.NOT_FOUND,
        ErrorCode.LICENSE_INACTIVE,
        ErrorCode.FORBIDDEN,
        ErrorCode.DEVICE_LIMIT,
    ),
    summary="Activate this machine: a signed machine activation and the newest license file",
)
@fast_path(_fast(ActivateRequest, _activate))
async def activate(
    body: ActivateRequest, request: Request, services: ServicesDep
) -> ActivateResponse:
    # Served by the fast path (fast_path.py) unless the body is not plainly valid.
    return await _activate(services, body, _ip(request, services))


async def _heartbeat(services: Services, body: HeartbeatRequest, ip: str) -> HeartbeatResponse:
    reply = await run_service(services, services.activations.heartbeat, body, ip)
    return HeartbeatResponse.model_validate(asdict(reply))


@router.post(
    "/heartbeat",
    response_model=HeartbeatResponse,
    responses=problem_responses(ErrorCode.NOT_FOUND, ErrorCode.FORBIDDEN),
    summary="A live machine's heartbeat: its state, a newer file, the revocation list",
)
@fast_path(_fast(HeartbeatRequest, _heartbeat))
async def heartbeat(
    body: HeartbeatRequest, request: Request, services: ServicesDep
) -> HeartbeatResponse:
    # Served by the fast path (fast_path.py) unless the body is not plainly valid.
    return await _heartbeat(services, body, _ip(request, services))


@router.get(
    "/{license_key:license_key}",
    response_model=LicenseStatusResponse,
    responses=problem_responses(ErrorCode.NOT_FOUND),
    summary="The license's state, terms and newest file version (the periodic check)",
)
async def license_status(
    license_key: Annotated[str, Path(pattern=LICENSE_KEY_PATTERN)], services: ServicesDep
) -> LicenseStatusResponse:
    found = services.activations.status(license_key)
    return LicenseStatusResponse.model_validate(asdict(found))
