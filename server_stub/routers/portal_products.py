"""``/staff/products``: the products licenses are made of and their modules (docs/licensing.md,
"Products and modules"). Thin: the rules and transactions are the client service's catalogue.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, status

from agent.protocol import ErrorCode

from ..deps import ServicesDep
from ..services.clients.products import CODE_PATTERN
from ..services.staff import Permission
from .portal_clients_schemas import (
    ModuleCreate,
    ModuleOut,
    ModulePatch,
    ProductCreate,
    ProductOut,
    ProductPatch,
    module_out,
    price_of,
    product_out,
)
from .staff_auth import StaffDep, staff_endpoint

router = APIRouter(prefix="/staff", tags=["portal"])

#: Products are what licenses are made of: reading them is ``licenses.read``; changing the
#: catalogue is a setting of the portal, Admin's alone (``settings.manage``).
PRODUCTS_READ = Permission.LICENSES_READ
PRODUCTS_WRITE = Permission.SETTINGS_MANAGE
ProductId = Annotated[str, Path(pattern=CODE_PATTERN)]
ModuleCode = Annotated[str, Path(pattern=CODE_PATTERN)]


# --- products and modules -----------------------------------------------------------------------


@staff_endpoint(
    router, "GET", "/products", PRODUCTS_READ, response_model=list[ProductOut], summary="Products"
)
def list_products(services: ServicesDep) -> list[ProductOut]:
    return [product_out(view) for view in services.clients.products.list()]


@staff_endpoint(
    router,
    "POST",
    "/products",
    PRODUCTS_WRITE,
    ErrorCode.ALREADY_EXISTS,
    status_code=status.HTTP_201_CREATED,
    response_model=ProductOut,
    summary="Add a product (Admin)",
)
def create_product(body: ProductCreate, principal: StaffDep, services: ServicesDep) -> ProductOut:
    return product_out(services.clients.products.create(principal.actor, body.id, body.name))


@staff_endpoint(
    router,
    "GET",
    "/products/{product_id}",
    PRODUCTS_READ,
    ErrorCode.NOT_FOUND,
    response_model=ProductOut,
    summary="A product and its modules (retired ones too)",
)
def get_product(product_id: ProductId, services: ServicesDep) -> ProductOut:
    return product_out(services.clients.products.get(product_id))


@staff_endpoint(
    router,
    "PATCH",
    "/products/{product_id}",
    PRODUCTS_WRITE,
    ErrorCode.NOT_FOUND,
    response_model=ProductOut,
    summary="Rename a product (Admin)",
)
def rename_product(
    product_id: ProductId, body: ProductPatch, principal: StaffDep, services: ServicesDep
) -> ProductOut:
    return product_out(services.clients.products.rename(principal.actor, product_id, body.name))


@staff_endpoint(
    router,
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
    product_id: ProductId, body: ModuleCreate, principal: StaffDep, services: ServicesDep
) -> ModuleOut:
    module = services.clients.products.add_module(
        principal.actor, product_id, body.code, body.name, price_of(body.list_price)
    )
    return module_out(module)


@staff_endpoint(
    router,
    "PATCH",
    "/products/{product_id}/modules/{code}",
    PRODUCTS_WRITE,
    ErrorCode.NOT_FOUND,
    response_model=ModuleOut,
    summary="Rename a module or set its list price (null clears it) (Admin)",
)
def update_module(
    product_id: ProductId,
    code: ModuleCode,
    body: ModulePatch,
    principal: StaffDep,
    services: ServicesDep,
) -> ModuleOut:
    sent = body.model_fields_set
    module = services.clients.products.update_module(
        principal.actor,
        product_id,
        code,
        name=body.name,
        price=price_of(body.list_price),
        clear_price="list_price" in sent and body.list_price is None,
    )
    return module_out(module)


@staff_endpoint(
    router,
    "POST",
    "/products/{product_id}/modules/{code}/retire",
    PRODUCTS_WRITE,
    ErrorCode.NOT_FOUND,
    response_model=ModuleOut,
    summary="Retire a module: licenses naming it keep it, new ones may not (Admin)",
)
def retire_module(
    product_id: ProductId, code: ModuleCode, principal: StaffDep, services: ServicesDep
) -> ModuleOut:
    return module_out(services.clients.products.retire_module(principal.actor, product_id, code))
