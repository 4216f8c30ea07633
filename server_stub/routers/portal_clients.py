"""``/staff/clients``, ``/staff/contracts``, ``/staff/products``: the license portal's clients,
contracts, products with their modules, and notes (docs/licensing.md, "Clients, contracts and
products"). Thin: every rule and transaction is the client service's.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response, status

from agent.protocol import ErrorCode

from ..deps import ServicesDep, run_service
from ..errors import ValidationFailed
from ..portal_models import Client, ClientNote, Contract, ProductModule
from ..services.clients import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    ClientDraft,
    ClientFilter,
    Contact,
    ContractDraft,
    ContractFilter,
    Document,
    Price,
    ProductView,
    is_paid,
)
from ..services.clients.paging import MAX_CURSOR_LENGTH
from ..services.staff import Permission
from ..services.tabular import MEDIA_TYPES, Format
from .portal_clients_schemas import (
    ClientCreate,
    ClientOut,
    ClientPageOut,
    ClientPatch,
    ClientStatus,
    ContactIn,
    ContactOut,
    ContractCreate,
    ContractOut,
    ContractPageOut,
    ContractPatch,
    ContractStatus,
    Deployment,
    DocumentIn,
    DocumentOut,
    ImportOut,
    ModuleCreate,
    ModuleOut,
    ModulePatch,
    NoteCreate,
    NoteOut,
    NotePageOut,
    PriceIn,
    PriceOut,
    ProductCreate,
    ProductOut,
    ProductPatch,
    Segment,
)
from .staff_auth import StaffDep, staff_endpoint

router = APIRouter(prefix="/staff", tags=["portal"])

Cursor = Annotated[
    str | None,
    Query(max_length=MAX_CURSOR_LENGTH, description="next_cursor of the previous page"),
]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT)]
#: Products are what licenses are made of: reading them is ``licenses.read``; changing the
#: catalogue is a setting of the portal, Admin's alone (``settings.manage``).
PRODUCTS_READ = Permission.LICENSES_READ
PRODUCTS_WRITE = Permission.SETTINGS_MANAGE
_XLSX = MEDIA_TYPES["xlsx"]


def endpoint(
    method: str, path: str, permission: Permission, *codes: ErrorCode, **kwargs: Any
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return staff_endpoint(router, method, path, permission, *codes, **kwargs)


def _document_route(path: str, method: str, extra: dict[str, Any]) -> None:
    """Add to a route's OpenAPI operation what ``staff_endpoint`` cannot take twice (a raw
    request body, a response's media types)."""
    for route in router.routes:
        if getattr(route, "path", None) == router.prefix + path and method in getattr(
            route, "methods", ()
        ):
            for key, value in extra.items():
                route.openapi_extra.setdefault(key, {}).update(value)  # type: ignore[attr-defined]


# --- conversions --------------------------------------------------------------------------------


def _client_out(client: Client) -> ClientOut:
    return ClientOut(
        id=client.id,
        legal_name=client.legal_name,
        inn=client.inn,
        segment=client.segment,
        deployment=client.deployment,
        status=client.status,
        manager_id=client.manager_id,
        contacts=[ContactOut(**c) for c in client.contacts],
        created_at=client.created_at,
        updated_at=client.updated_at,
    )


def _contacts(items: list[ContactIn]) -> tuple[Contact, ...]:
    return tuple(Contact(c.name, c.email, c.phone, c.position) for c in items)


def _documents(items: list[DocumentIn]) -> tuple[Document, ...]:
    return tuple(Document(d.title, d.url) for d in items)


def _contract_out(contract: Contract) -> ContractOut:
    return ContractOut(
        id=contract.id,
        client_id=contract.client_id,
        number=contract.number,
        signed_on=contract.signed_on,
        amount_minor=contract.amount_minor,
        currency=contract.currency,
        sla=contract.sla,
        documents=[DocumentOut(**d) for d in contract.documents],
        status=contract.status,
        paid=is_paid(contract),
        paid_at=contract.paid_at,
        created_at=contract.created_at,
        updated_at=contract.updated_at,
    )


def _module_out(module: ProductModule) -> ModuleOut:
    price = (
        PriceOut(amount_minor=module.list_price_minor, currency=module.currency)
        if module.list_price_minor is not None and module.currency is not None
        else None
    )
    return ModuleOut(
        code=module.code,
        name=module.name,
        list_price=price,
        retired=module.retired_at is not None,
        retired_at=module.retired_at,
    )


def _product_out(view: ProductView) -> ProductOut:
    return ProductOut(
        id=view.product.id,
        name=view.product.name,
        created_at=view.product.created_at,
        modules=[_module_out(m) for m in view.modules],
    )


def _price(price: PriceIn | None) -> Price | None:
    return Price(price.amount_minor, price.currency) if price is not None else None


def _note_out(note: ClientNote) -> NoteOut:
    return NoteOut(
        id=note.id,
        client_id=note.client_id,
        license_id=note.license_id,
        author=note.author,
        body=note.body,
        created_at=note.created_at,
    )


# --- clients ------------------------------------------------------------------------------------


def _client_filter(
    segment: Annotated[Segment | None, Query()] = None,
    status: Annotated[ClientStatus | None, Query()] = None,
    manager_id: Annotated[str | None, Query(max_length=64)] = None,
    deployment: Annotated[Deployment | None, Query()] = None,
    q: Annotated[
        str | None,
        Query(max_length=300, description="legal name substring (any case) or INN prefix"),
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
    return ClientPageOut(items=[_client_out(c) for c in page.items], next_cursor=page.next_cursor)


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
        contacts=_contacts(body.contacts),
    )
    return _client_out(services.clients.create(principal.actor, draft))


@endpoint(
    "GET",
    "/exports/clients",
    Permission.CLIENTS_READ,
    response_class=Response,
    summary="The clients the filters select, as CSV or XLSX (audited)",
)
def export_clients(
    principal: StaffDep,
    services: ServicesDep,
    filters: ClientFilterDep,
    format: Literal["csv", "xlsx"] = "csv",
) -> Response:
    data = services.clients.export_clients(principal.actor, filters, format)
    return Response(
        data,
        media_type=MEDIA_TYPES[format],
        headers={"Content-Disposition": f'attachment; filename="clients.{format}"'},
    )


_document_route(
    "/exports/clients",
    "GET",
    {
        "responses": {
            "200": {
                "description": "The file",
                "content": {
                    MEDIA_TYPES["csv"]: {"schema": {"type": "string"}},
                    _XLSX: {"schema": {"type": "string", "format": "binary"}},
                },
            }
        }
    },
)


@endpoint(
    "POST",
    "/imports/clients",
    Permission.CLIENTS_WRITE,
    status_code=status.HTTP_201_CREATED,
    response_model=ImportOut,
    summary="Create clients from a CSV or XLSX file: all rows or none (422 names every bad row)",
)
async def import_clients(request: Request, principal: StaffDep, services: ServicesDep) -> ImportOut:
    media = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    formats: dict[str, Format] = {"text/csv": "csv", _XLSX: "xlsx"}
    fmt = formats.get(media)
    if fmt is None:
        raise ValidationFailed(
            f"send the file as the request body with Content-Type text/csv or {_XLSX}"
        )
    data = await request.body()
    result = await run_service(
        services, services.clients.import_clients, principal.actor, data, fmt
    )
    return ImportOut(imported=len(result.created), ids=result.created)


_document_route(
    "/imports/clients",
    "POST",
    {
        "requestBody": {
            "required": True,
            "content": {
                "text/csv": {"schema": {"type": "string"}},
                _XLSX: {"schema": {"type": "string", "format": "binary"}},
            },
        }
    },
)


@endpoint(
    "GET",
    "/clients/{client_id}",
    Permission.CLIENTS_READ,
    ErrorCode.NOT_FOUND,
    response_model=ClientOut,
    summary="A client",
)
def get_client(client_id: str, services: ServicesDep) -> ClientOut:
    return _client_out(services.clients.get(client_id))


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
    client_id: str, body: ClientPatch, principal: StaffDep, services: ServicesDep
) -> ClientOut:
    changes = body.model_dump(exclude_unset=True)
    if body.contacts is not None:
        changes["contacts"] = _contacts(body.contacts)
    return _client_out(services.clients.update(principal.actor, client_id, changes))


# --- contracts ----------------------------------------------------------------------------------


def _contract_page(
    services: Any, filters: ContractFilter, cursor: str | None, limit: int
) -> ContractPageOut:
    page = services.clients.contracts.list(filters, cursor=cursor, limit=limit)
    return ContractPageOut(
        items=[_contract_out(c) for c in page.items], next_cursor=page.next_cursor
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
    client_id: str, body: ContractCreate, principal: StaffDep, services: ServicesDep
) -> ContractOut:
    draft = ContractDraft(
        number=body.number,
        signed_on=body.signed_on,
        amount_minor=body.amount_minor,
        currency=body.currency,
        sla=body.sla,
        documents=_documents(body.documents),
        status=body.status,
    )
    return _contract_out(services.clients.contracts.create(principal.actor, client_id, draft))


@endpoint(
    "GET",
    "/clients/{client_id}/contracts",
    Permission.CONTRACTS_READ,
    ErrorCode.NOT_FOUND,
    response_model=ContractPageOut,
    summary="A client's contracts, newest signed first",
)
def list_client_contracts(
    client_id: str, services: ServicesDep, cursor: Cursor = None, limit: Limit = DEFAULT_LIMIT
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
    client_id: Annotated[str | None, Query(max_length=64)] = None,
    paid: Annotated[bool | None, Query(description="true: paid only; false: unpaid")] = None,
    signed_from: Annotated[date | None, Query(description="on or after")] = None,
    signed_to: Annotated[date | None, Query(description="on or before")] = None,
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
def get_contract(contract_id: str, services: ServicesDep) -> ContractOut:
    return _contract_out(services.clients.contracts.get(contract_id))


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
    contract_id: str, body: ContractPatch, principal: StaffDep, services: ServicesDep
) -> ContractOut:
    changes = body.model_dump(exclude_unset=True)
    if body.documents is not None:
        changes["documents"] = _documents(body.documents)
    contract = services.clients.contracts.update(principal.actor, contract_id, changes)
    return _contract_out(contract)


# --- products and modules -----------------------------------------------------------------------


@endpoint("GET", "/products", PRODUCTS_READ, response_model=list[ProductOut], summary="Products")
def list_products(services: ServicesDep) -> list[ProductOut]:
    return [_product_out(view) for view in services.clients.products.list()]


@endpoint(
    "POST",
    "/products",
    PRODUCTS_WRITE,
    ErrorCode.ALREADY_EXISTS,
    status_code=status.HTTP_201_CREATED,
    response_model=ProductOut,
    summary="Add a product (Admin)",
)
def create_product(body: ProductCreate, principal: StaffDep, services: ServicesDep) -> ProductOut:
    return _product_out(services.clients.products.create(principal.actor, body.id, body.name))


@endpoint(
    "GET",
    "/products/{product_id}",
    PRODUCTS_READ,
    ErrorCode.NOT_FOUND,
    response_model=ProductOut,
    summary="A product and its modules (retired ones too)",
)
def get_product(product_id: str, services: ServicesDep) -> ProductOut:
    return _product_out(services.clients.products.get(product_id))


@endpoint(
    "PATCH",
    "/products/{product_id}",
    PRODUCTS_WRITE,
    ErrorCode.NOT_FOUND,
    response_model=ProductOut,
    summary="Rename a product (Admin)",
)
def rename_product(
    product_id: str, body: ProductPatch, principal: StaffDep, services: ServicesDep
) -> ProductOut:
    return _product_out(services.clients.products.rename(principal.actor, product_id, body.name))


@endpoint(
    "POST",
    "/products/{product_id}/modules",
    PRODUCTS_WRITE,
    ErrorCode.NOT_FOUND,
    ErrorCode.ALREADY_EXISTS,
    status_code=status.HTTP_201_CREATED,
    response_model=ModuleOut,
    summary="Add a module to a product (Admin)",
)
def add_module(
    product_id: str, body: ModuleCreate, principal: StaffDep, services: ServicesDep
) -> ModuleOut:
    module = services.clients.products.add_module(
        principal.actor, product_id, body.code, body.name, _price(body.list_price)
    )
    return _module_out(module)


@endpoint(
    "PATCH",
    "/products/{product_id}/modules/{code}",
    PRODUCTS_WRITE,
    ErrorCode.NOT_FOUND,
    response_model=ModuleOut,
    summary="Rename a module or set its list price (null clears it) (Admin)",
)
def update_module(
    product_id: str, code: str, body: ModulePatch, principal: StaffDep, services: ServicesDep
) -> ModuleOut:
    sent = body.model_fields_set
    module = services.clients.products.update_module(
        principal.actor,
        product_id,
        code,
        name=body.name,
        price=_price(body.list_price),
        clear_price="list_price" in sent and body.list_price is None,
    )
    return _module_out(module)


@endpoint(
    "POST",
    "/products/{product_id}/modules/{code}/retire",
    PRODUCTS_WRITE,
    ErrorCode.NOT_FOUND,
    response_model=ModuleOut,
    summary="Retire a module: licenses naming it keep it, new ones may not (Admin)",
)
def retire_module(
    product_id: str, code: str, principal: StaffDep, services: ServicesDep
) -> ModuleOut:
    return _module_out(services.clients.products.retire_module(principal.actor, product_id, code))


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
    client_id: str, body: NoteCreate, principal: StaffDep, services: ServicesDep
) -> NoteOut:
    note = services.clients.notes.add(principal.actor, client_id, body.body, body.license_id)
    return _note_out(note)


@endpoint(
    "GET",
    "/clients/{client_id}/notes",
    Permission.CLIENTS_READ,
    ErrorCode.NOT_FOUND,
    response_model=NotePageOut,
    summary="A client's notes, newest first",
)
def list_notes(
    client_id: str,
    services: ServicesDep,
    license_id: Annotated[str | None, Query(max_length=64)] = None,
    cursor: Cursor = None,
    limit: Limit = DEFAULT_LIMIT,
) -> NotePageOut:
    page = services.clients.notes.list(client_id, license_id=license_id, cursor=cursor, limit=limit)
    return NotePageOut(items=[_note_out(n) for n in page.items], next_cursor=page.next_cursor)
