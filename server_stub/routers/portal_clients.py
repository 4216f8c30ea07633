"""``/staff/clients``, ``/staff/contracts``, ``/staff/products``: the license portal's clients,
contracts, products with their modules, and notes (docs/licensing.md, "Clients, contracts and
products"). Thin: every rule and transaction is the client service's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Response, status

from agent.protocol import ErrorCode

from ..deps import ServicesDep, run_service
from ..services.clients import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    ClientDraft,
    ClientFilter,
    ContractDraft,
    ContractFilter,
)
from ..services.clients.fields import LINE_PATTERN
from ..services.clients.paging import MAX_CURSOR_LENGTH
from ..services.staff import Permission
from ..wiring import Services
from .portal_clients_schemas import (
    ID_PATTERN,
    ClientCreate,
    ClientOut,
    ClientPageOut,
    ClientPatch,
    ClientStatus,
    ContractCreate,
    ContractOut,
    ContractPageOut,
    ContractPatch,
    ContractStatus,
    Deployment,
    ImportOut,
    IsoDate,
    NoteCreate,
    NoteOut,
    NotePageOut,
    Segment,
    client_out,
    contacts_of,
    contract_out,
    documents_of,
    note_out,
)
from .staff_auth import StaffDep, staff_endpoint
from .tabular_files import DOWNLOAD_RESPONSES, UPLOAD_OPENAPI, file_response, read_upload

router = APIRouter(prefix="/staff", tags=["portal"])

Cursor = Annotated[
    str | None,
    Query(max_length=MAX_CURSOR_LENGTH, description="next_cursor of the previous page"),
]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT)]
RowId = Annotated[str, Path(pattern=ID_PATTERN)]
QueryId = Annotated[str | None, Query(pattern=ID_PATTERN)]


def endpoint(
    method: str, path: str, permission: Permission, *codes: ErrorCode, **kwargs: Any
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return staff_endpoint(router, method, path, permission, *codes, **kwargs)


# --- clients ------------------------------------------------------------------------------------


def _client_filter(
    segment: Annotated[Segment | None, Query()] = None,
    status: Annotated[ClientStatus | None, Query()] = None,
    manager_id: QueryId = None,
    deployment: Annotated[Deployment | None, Query()] = None,
    q: Annotated[
        str | None,
        Query(
            max_length=300,
            pattern=LINE_PATTERN,
            description="legal name substring (any case) or INN prefix",
        ),
    ] = None,
) -> ClientFilter:
    return ClientFilter(segment, status, manager_id, deployment, q)


#: The list's filters, shared by the list and the export.
ClientFilterDep = Annotated[ClientFilter, Depends(_client_filter)]


@endpoint(
    "GET",
    "/clients",
    Permission.CLIENTS_READ,
    response_model=ClientPageOut,
    summary="Clients, newest first: filters, search and cursor pagination",
)
def list_clients(
    services: ServicesDep,
    filters: ClientFilterDep,
    cursor: Cursor = None,
    limit: Limit = DEFAULT_LIMIT,
) -> ClientPageOut:
    page = services.clients.list(filters, cursor=cursor, limit=limit)
    return ClientPageOut(items=[client_out(c) for c in page.items], next_cursor=page.next_cursor)


@endpoint(
    "POST",
    "/clients",
    Permission.CLIENTS_WRITE,
    ErrorCode.ALREADY_EXISTS,
    status_code=status.HTTP_201_CREATED,
    response_model=ClientOut,
    summary="Create a client (INN unique and valid by its check digits)",
)
def create_client(body: ClientCreate, principal: StaffDep, services: ServicesDep) -> ClientOut:
    draft = ClientDraft(
        legal_name=body.legal_name,
        inn=body.inn,
        segment=body.segment,
        deployment=body.deployment,
        status=body.status,
        manager_id=body.manager_id,
        contacts=contacts_of(body.contacts),
    )
    return client_out(services.clients.create(principal.actor, draft))


@endpoint(
    "GET",
    "/exports/clients",
    Permission.CLIENTS_READ,
    response_class=Response,
    responses=DOWNLOAD_RESPONSES,
    summary="The clients the filters select, as CSV or XLSX (audited)",
)
def export_clients(
    principal: StaffDep,
    services: ServicesDep,
    filters: ClientFilterDep,
    format: Literal["csv", "xlsx"] = "csv",
) -> Response:
    data = services.clients.export_clients(principal.actor, filters, format)
    return file_response(data, format, "clients")


@endpoint(
    "POST",
    "/imports/clients",
    Permission.CLIENTS_WRITE,
    status_code=status.HTTP_201_CREATED,
    response_model=ImportOut,
    openapi_extra=UPLOAD_OPENAPI,
    summary="Create clients from a CSV or XLSX file: all rows or none (422 names every bad row)",
)
async def import_clients(request: Request, principal: StaffDep, services: ServicesDep) -> ImportOut:
    data, fmt = await read_upload(request)
    result = await run_service(
        services, services.clients.import_clients, principal.actor, data, fmt
    )
    return ImportOut(imported=len(result.created), ids=result.created)


@endpoint(
    "GET",
    "/clients/{client_id}",
    Permission.CLIENTS_READ,
    ErrorCode.NOT_FOUND,
    response_model=ClientOut,
    summary="A client",
)
def get_client(client_id: RowId, services: ServicesDep) -> ClientOut:
    return client_out(services.clients.get(client_id))


@endpoint(
    "PATCH",
    "/clients/{client_id}",
    Permission.CLIENTS_WRITE,
    ErrorCode.NOT_FOUND,
    ErrorCode.ALREADY_EXISTS,
    response_model=ClientOut,
    summary="Change a client; status archived archives it",
)
def update_client(
    client_id: RowId, body: ClientPatch, principal: StaffDep, services: ServicesDep
) -> ClientOut:
    changes = body.model_dump(exclude_unset=True)
    if body.contacts is not None:
        changes["contacts"] = contacts_of(body.contacts)
    return client_out(services.clients.update(principal.actor, client_id, changes))


# --- contracts ----------------------------------------------------------------------------------


def _contract_page(
    services: Services, filters: ContractFilter, cursor: str | None, limit: int
) -> ContractPageOut:
    page = services.clients.contracts.list(filters, cursor=cursor, limit=limit)
    return ContractPageOut(
        items=[contract_out(c) for c in page.items], next_cursor=page.next_cursor
    )


@endpoint(
    "POST",
    "/clients/{client_id}/contracts",
    Permission.CONTRACTS_WRITE,
    ErrorCode.NOT_FOUND,
    ErrorCode.ALREADY_EXISTS,
    status_code=status.HTTP_201_CREATED,
    response_model=ContractOut,
    summary="Add a contract to a client (number unique)",
)
def create_contract(
    client_id: RowId, body: ContractCreate, principal: StaffDep, services: ServicesDep
) -> ContractOut:
    draft = ContractDraft(
        number=body.number,
        signed_on=body.signed_on,
        amount_minor=body.amount_minor,
        currency=body.currency,
        sla=body.sla,
        documents=documents_of(body.documents),
        status=body.status,
    )
    return contract_out(services.clients.contracts.create(principal.actor, client_id, draft))


@endpoint(
    "GET",
    "/clients/{client_id}/contracts",
    Permission.CONTRACTS_READ,
    ErrorCode.NOT_FOUND,
    response_model=ContractPageOut,
    summary="A client's contracts, newest signed first",
)
def list_client_contracts(
    client_id: RowId, services: ServicesDep, cursor: Cursor = None, limit: Limit = DEFAULT_LIMIT
) -> ContractPageOut:
    return _contract_page(services, ContractFilter(client_id=client_id), cursor, limit)


@endpoint(
    "GET",
    "/contracts",
    Permission.CONTRACTS_READ,
    ErrorCode.NOT_FOUND,
    response_model=ContractPageOut,
    summary="Contracts, newest signed first: filters and cursor pagination",
)
def list_contracts(
    services: ServicesDep,
    status: Annotated[ContractStatus | None, Query()] = None,
    client_id: QueryId = None,
    paid: Annotated[bool | None, Query(description="true: paid only; false: unpaid")] = None,
    signed_from: Annotated[IsoDate | None, Query(description="on or after")] = None,
    signed_to: Annotated[IsoDate | None, Query(description="on or before")] = None,
    cursor: Cursor = None,
    limit: Limit = DEFAULT_LIMIT,
) -> ContractPageOut:
    filters = ContractFilter(status, client_id, paid, signed_from, signed_to)
    return _contract_page(services, filters, cursor, limit)


@endpoint(
    "GET",
    "/contracts/{contract_id}",
    Permission.CONTRACTS_READ,
    ErrorCode.NOT_FOUND,
    response_model=ContractOut,
    summary="A contract",
)
def get_contract(contract_id: RowId, services: ServicesDep) -> ContractOut:
    return contract_out(services.clients.contracts.get(contract_id))


@endpoint(
    "PATCH",
    "/contracts/{contract_id}",
    Permission.CONTRACTS_WRITE,
    ErrorCode.NOT_FOUND,
    ErrorCode.ALREADY_EXISTS,
    response_model=ContractOut,
    summary="Change a contract; status moves draft → signed → closed, never back",
)
def update_contract(
    contract_id: RowId, body: ContractPatch, principal: StaffDep, services: ServicesDep
) -> ContractOut:
    changes = body.model_dump(exclude_unset=True)
    if body.documents is not None:
        changes["documents"] = documents_of(body.documents)
    contract = services.clients.contracts.update(principal.actor, contract_id, changes)
    return contract_out(contract)


# --- notes --------------------------------------------------------------------------------------


@endpoint(
    "POST",
    "/clients/{client_id}/notes",
    Permission.NOTES_WRITE,
    ErrorCode.NOT_FOUND,
    status_code=status.HTTP_201_CREATED,
    response_model=NoteOut,
    summary="Add a note to a client, optionally about one of its licenses",
)
def add_note(
    client_id: RowId, body: NoteCreate, principal: StaffDep, services: ServicesDep
) -> NoteOut:
    note = services.clients.notes.add(principal.actor, client_id, body.body, body.license_id)
    return note_out(note)


@endpoint(
    "GET",
    "/clients/{client_id}/notes",
    Permission.CLIENTS_READ,
    ErrorCode.NOT_FOUND,
    response_model=NotePageOut,
    summary="A client's notes, newest first",
)
def list_notes(
    client_id: RowId,
    services: ServicesDep,
    license_id: QueryId = None,
    cursor: Cursor = None,
    limit: Limit = DEFAULT_LIMIT,
) -> NotePageOut:
    page = services.clients.notes.list(client_id, license_id=license_id, cursor=cursor, limit=limit)
    return NotePageOut(items=[note_out(n) for n in page.items], next_cursor=page.next_cursor)
