"""``/license`` and ``/devices``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request, Response, status

from agent.protocol import (
    DeviceBinding,
    DeviceList,
    DeviceOut,
    ErrorCode,
    LicenseResponse,
    Quota,
)

from ..deps import PrincipalDep, ServicesDep, request_principal
from ..fast_path import FastPathRoute, fast_path, json_response
from ..problems import AUTH_ERRORS, problem_responses
from ..services.license import LicenseView
from ..wiring import Services

router = APIRouter(tags=["license"], route_class=FastPathRoute)


def _license_response(view: LicenseView) -> LicenseResponse:
    return LicenseResponse(
        plan=view.plan,
        status=view.status,
        quota=Quota(
            limit=view.limit,
            used=view.used,
            held=view.held,
            remaining=view.remaining,
            period_end=view.period_end,
        ),
        device_binding=DeviceBinding(
            fingerprint=view.fingerprint,
            bound=True,
            devices_used=view.devices_used,
            devices_max=view.devices_max,
        ),
        features=view.features,
        lease=view.lease,
        lease_expires_at=view.lease_expires_at,
    )


async def _fast_license(request: Request) -> Response:
    services: Services = request.app.state.services
    # A read (one statement) on the loop; it writes only on a period's first request or after
    # a hold expired, and then briefly.
    view = services.license.view(request_principal(request, services))
    return json_response(_license_response(view))


@router.get(
    "/license",
    response_model=LicenseResponse,
    responses=problem_responses(*AUTH_ERRORS),
    summary="Plan, quota, device binding, features and a signed offline lease",
)
@fast_path(_fast_license)
async def get_license(principal: PrincipalDep, services: ServicesDep) -> LicenseResponse:
    # Served by ``_fast_license`` (fast_path.py); this signature gives the OpenAPI schema.
    return _license_response(services.license.view(principal))


@router.get(
    "/devices",
    response_model=DeviceList,
    responses=problem_responses(*AUTH_ERRORS),
    summary="Devices bound to this account",
)
def list_devices(principal: PrincipalDep, services: ServicesDep) -> DeviceList:
    devices, devices_max = services.auth.list_devices(principal)
    return DeviceList(
        devices=[
            DeviceOut(
                id=d.id,
                name=d.name,
                created_at=d.created_at,
                last_seen_at=d.last_seen_at,
                current=d.id == principal.device.id,
            )
            for d in devices
        ],
        devices_max=devices_max,
    )


@router.delete(
    "/devices/{device_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=problem_responses(*AUTH_ERRORS, ErrorCode.NOT_FOUND),
    summary="Deactivate a device and end its sessions",
)
def deactivate_device(
    device_id: Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_\-]+$")],
    principal: PrincipalDep,
    services: ServicesDep,
) -> Response:
    services.auth.deactivate_device(principal, device_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
