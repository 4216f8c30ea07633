"""``/staff/activations``: staff watch installations and free a machine's slot by hand."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel

from agent.protocol import ErrorCode

from ..deps import ServicesDep
from ..portal_models import Activation
from ..services.activations import MAX_PAGE
from ..services.staff import Permission
from .staff_auth import StaffDep, staff_endpoint

router = APIRouter(prefix="/staff/activations", tags=["staff"])

_ID = r"^[0-9a-f-]{36}$"


class ActivationOut(BaseModel):
    id: str
    license_id: str
    client_id: str
    fingerprint: str
    server_id: str
    ip: str
    product_version: str
    modules: list[str]
    file_version: int
    activated_at: datetime
    last_heartbeat_at: datetime
    heartbeats: int
    errors: list[dict[str, Any]]
    live: bool
    deactivated_at: datetime | None
    deactivated_reason: str | None


class ActivationPageOut(BaseModel):
    activations: list[ActivationOut]
    next_cursor: str | None


def _out(row: Activation, client_id: str) -> ActivationOut:
    return ActivationOut(
        id=row.id,
        license_id=row.license_id,
        client_id=client_id,
        fingerprint=row.fingerprint,
        server_id=row.server_id,
        ip=row.ip,
        product_version=row.product_version,
        modules=list(row.modules),
        file_version=row.file_version,
        activated_at=row.activated_at,
        last_heartbeat_at=row.last_heartbeat_at,
        heartbeats=row.heartbeats,
        errors=list(row.errors),
        live=row.deactivated_at is None,
        deactivated_at=row.deactivated_at,
        deactivated_reason=row.deactivated_reason,
    )


@staff_endpoint(
    router,
    "GET",
    "",
    Permission.ACTIVATIONS_READ,
    ErrorCode.VALIDATION_ERROR,
    response_model=ActivationPageOut,
    summary="Activations, newest first (filters: license, client, live; cursor pagination)",
)
def list_activations(
    services: ServicesDep,
    license_id: Annotated[str | None, Query(pattern=_ID)] = None,
    client_id: Annotated[str | None, Query(pattern=_ID)] = None,
    live: bool | None = None,
    cursor: Annotated[
        str | None,
        Query(pattern=r"^[0-9]{1,17}\.[0-9a-f-]{36}$", description="next_cursor of the last page"),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
) -> ActivationPageOut:
    page = services.activations.search(
        license_id=license_id, client_id=client_id, live=live, cursor=cursor, limit=limit
    )
    return ActivationPageOut(
        activations=[_out(row, lic.client_id) for row, lic in page.rows],
        next_cursor=page.next_cursor,
    )


@staff_endpoint(
    router,
    "POST",
    "/{activation_id}/deactivate",
    Permission.ACTIVATIONS_ISSUE,
    ErrorCode.NOT_FOUND,
    response_model=ActivationOut,
    summary="Deactivate a machine: its slot is free at once; its next heartbeat hears so",
)
def deactivate_activation(
    activation_id: Annotated[str, Path(pattern=_ID)], principal: StaffDep, services: ServicesDep
) -> ActivationOut:
    row, license_row = services.activations.deactivate(principal.actor, activation_id)
    return _out(row, license_row.client_id)
