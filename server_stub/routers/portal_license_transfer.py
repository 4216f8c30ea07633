"""Licenses in and out as CSV or XLSX for staff (docs/licensing.md, "Licenses in and out as CSV
or XLSX"): ``GET /staff/licenses/export`` and ``POST /staff/imports/licenses``.

Included in the app before ``portal_licenses``: ``/staff/licenses/export`` is a fixed path, not
a license reference.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from fastapi import APIRouter, Request, Response, status

from agent.protocol import ErrorCode

from ..deps import ServicesDep, run_service
from ..services.staff import Permission
from .portal_licenses import LicenseFilterDep
from .portal_licenses_schemas import ImportedOut, LicenseImportOut
from .staff_auth import StaffDep, staff_endpoint
from .tabular_files import DOWNLOAD_RESPONSES, UPLOAD_OPENAPI, file_response, read_upload

router = APIRouter(tags=["licensing"])


def endpoint(
    method: str, path: str, permission: Permission, *codes: ErrorCode, **kwargs: Any
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return staff_endpoint(
        router, method, path, permission, ErrorCode.VALIDATION_ERROR, *codes, **kwargs
    )


@endpoint(
    "GET",
    "/staff/licenses/export",
    Permission.LICENSES_READ,
    response_class=Response,
    responses=DOWNLOAD_RESPONSES,
    summary="The licenses the list's filters select, as CSV or XLSX (audited; no keys)",
)
def export_licenses(
    principal: StaffDep,
    services: ServicesDep,
    filters: LicenseFilterDep,
    format: Literal["csv", "xlsx"] = "csv",
) -> Response:
    data = services.licensing.export_licenses(principal.actor, filters, format)
    return file_response(data, format, "licenses")


@endpoint(
    "POST",
    "/staff/imports/licenses",
    Permission.LICENSES_ISSUE,
    status_code=status.HTTP_201_CREATED,
    response_model=LicenseImportOut,
    openapi_extra=UPLOAD_OPENAPI,
    summary="Issue licenses from a CSV or XLSX file: all rows or none (422 names every bad row)",
)
async def import_licenses(
    request: Request, principal: StaffDep, services: ServicesDep
) -> LicenseImportOut:
    data, fmt = await read_upload(request)
    created = await run_service(
        services, services.licensing.import_licenses, principal.actor, data, fmt
    )
    return LicenseImportOut(
        imported=len(created),
        pending_approval=sum(c.pending_approval for c in created),
        licenses=[
            ImportedOut(row=c.row, id=c.id, status=c.status, pending_approval=c.pending_approval)
            for c in created
        ],
    )
