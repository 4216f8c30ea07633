"""``/staff/store/products``: the operator's store catalogue (docs/points.md, "Store purchases
(RuStore)"). Reading is ``billing.read``; changing it is ``store.products.write`` (Admin); every
change is audited by the catalogue.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, status
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
)

from agent.protocol import PLAN_NAME_PATTERN, PRODUCT_ID_PATTERN, Currency, ErrorCode, ProductKind
from agent.protocol import ProductOut as _ProductOut

from ..deps import ServicesDep
from ..services.staff import Permission
from ..services.store.products import Product, ProductChanges
from .billing_schemas import NoNull, PatchRequest, PriceMinor
from .staff_auth import StaffDep, staff_endpoint
from .store import product_out
from .wire_numbers import json_integer

router = APIRouter(prefix="/staff/store", tags=["store"])

ProductIdPath = Annotated[str, Path(pattern=PRODUCT_ID_PATTERN)]
ProductId = Annotated[str, StringConstraints(pattern=PRODUCT_ID_PATTERN)]
PlanName = Annotated[str, StringConstraints(pattern=PLAN_NAME_PATTERN)]
Title = Annotated[
    str, StringConstraints(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")
]
GrantedPoints = Annotated[int, Field(ge=1, le=10**12), BeforeValidator(json_integer)]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StaffProductOut(_ProductOut):
    active: bool


class StaffProductList(BaseModel):
    products: list[StaffProductOut]


class ProductCreate(_Request):
    id: ProductId
    kind: ProductKind
    title: Title
    price_minor: PriceMinor
    currency: Currency = "RUB"
    #: A consumable's points (required for one, refused for a subscription).
    points: GrantedPoints | None = None
    #: A subscription's plan (required for one, refused for a consumable).
    plan: PlanName | None = None
    active: bool = True


class ProductPatch(PatchRequest):
    """What to change; a field left out is kept. The id and kind never change."""

    title: Title | NoNull = None
    price_minor: PriceMinor | NoNull = None
    currency: Currency | NoNull = None
    points: GrantedPoints | NoNull = None
    plan: PlanName | NoNull = None
    active: bool | NoNull = None


def _staff_out(product: Product) -> StaffProductOut:
    return StaffProductOut(**product_out(product).model_dump(), active=product.active)


@staff_endpoint(
    router,
    "GET",
    "/products",
    Permission.BILLING_READ,
    response_model=StaffProductList,
    summary="Every store product, inactive ones too",
)
def staff_list_products(services: ServicesDep) -> StaffProductList:
    return StaffProductList(products=[_staff_out(p) for p in services.store.products.all()])


@staff_endpoint(
    router,
    "POST",
    "/products",
    Permission.STORE_PRODUCTS_WRITE,
    ErrorCode.ALREADY_EXISTS,
    ErrorCode.VALIDATION_ERROR,
    status_code=status.HTTP_201_CREATED,
    response_model=StaffProductOut,
    summary="Add a store product (Admin)",
)
def staff_create_product(
    body: ProductCreate, principal: StaffDep, services: ServicesDep
) -> StaffProductOut:
    product = Product(**{**body.model_dump(), "kind": body.kind.value})
    return _staff_out(services.store.products.create(principal.actor, product))


@staff_endpoint(
    router,
    "PATCH",
    "/products/{product_id}",
    Permission.STORE_PRODUCTS_WRITE,
    ErrorCode.NOT_FOUND,
    ErrorCode.VALIDATION_ERROR,
    response_model=StaffProductOut,
    summary="Change a store product's title, price, grant or whether it is on sale (Admin)",
)
def staff_change_product(
    product_id: ProductIdPath, body: ProductPatch, principal: StaffDep, services: ServicesDep
) -> StaffProductOut:
    changes = ProductChanges(**body.model_dump(exclude_none=True))
    return _staff_out(services.store.products.change(principal.actor, product_id, changes))
