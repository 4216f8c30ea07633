"""Products and their modules: the catalogue licenses are made of.

Modules are never deleted: a license signed with a module's code must keep meaning the same
thing, so a module is retired instead (no new license may name it; see the licensing service).
A module's optional list price (minor units per year, with its currency) is the plan side of the
"sales by module" report.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ...db import transaction
from ...errors import AlreadyExists, NotFound
from ...portal_models import Product, ProductModule
from ..audit import record
from ..context import ServiceContext
from .fields import CURRENCY_PATTERN, MAX_AMOUNT_MINOR, clean_text, has_control_characters
from .records import product_object, raise_problems

#: A product's id and a module's code: what a license file carries (agent.protocol ModuleName).
CODE_PATTERN: Final = r"^[a-z][a-z0-9_.-]{0,63}$"
NAME_MAX: Final = 200
#: Most modules a product may have (a license file lists at most 64 of them).
MAX_MODULES: Final = 64
_CODE = re.compile(CODE_PATTERN)
_CURRENCY = re.compile(CURRENCY_PATTERN)


@dataclass(frozen=True)
class Price:
    amount_minor: int
    currency: str


@dataclass(frozen=True)
class ProductView:
    product: Product
    modules: list[ProductModule]


def _name_problems(name: str, field: str = "name") -> list[tuple[str, str]]:
    if not name or len(name) > NAME_MAX or has_control_characters(name):
        return [(field, f"1 to {NAME_MAX} characters, no control characters")]
    return []


def _price_problems(price: Price | None) -> list[tuple[str, str]]:
    if price is None:
        return []
    problems = []
    if not 0 <= price.amount_minor <= MAX_AMOUNT_MINOR:
        problems.append(("list_price.amount_minor", "an integer amount in minor units, 0 or more"))
    if not _CURRENCY.fullmatch(price.currency):
        problems.append(("list_price.currency", "an ISO 4217 code: three capital letters"))
    return problems


class ProductCatalog:
    def __init__(self, ctx: ServiceContext) -> None:
        self._ctx = ctx

    def list(self) -> list[ProductView]:
        with transaction(self._ctx.read) as session:
            products = list(session.scalars(select(Product).order_by(Product.id)))
            modules = list(
                session.scalars(
                    select(ProductModule).order_by(ProductModule.product_id, ProductModule.code)
                )
            )
        return [ProductView(p, [m for m in modules if m.product_id == p.id]) for p in products]

    def get(self, product_id: str) -> ProductView:
        with transaction(self._ctx.read) as session:
            product = session.get(Product, product_id)
            if product is None:
                raise NotFound("no such product")
            modules = list(
                session.scalars(
                    select(ProductModule)
                    .where(ProductModule.product_id == product_id)
                    .order_by(ProductModule.code)
                )
            )
        return ProductView(product, modules)

    def create(self, actor: str, product_id: str, name: str) -> ProductView:
        name = clean_text(name)
        problems = [] if _CODE.fullmatch(product_id) else [("id", "a code like tgflow")]
        raise_problems(problems + _name_problems(name))
        now = self._ctx.clock.now()
        try:
            with transaction(self._ctx.write) as session:
                if session.get(Product, product_id) is not None:
                    raise AlreadyExists("a product with this id already exists")
                product = Product(id=product_id, name=name, created_at=now)
                session.add(product)
                record(
                    session,
                    now,
                    actor,
                    "product.create",
                    product_object(product_id),
                    {"name": name},
                )
        except IntegrityError as exc:
            raise AlreadyExists("a product with this id already exists") from exc
        return ProductView(product, [])

    def rename(self, actor: str, product_id: str, name: str) -> ProductView:
        name = clean_text(name)
        raise_problems(_name_problems(name))
        now = self._ctx.clock.now()
        with transaction(self._ctx.write) as session:
            product = session.get(Product, product_id, with_for_update=True)
            if product is None:
                raise NotFound("no such product")
            if product.name != name:
                record(
                    session,
                    now,
                    actor,
                    "product.update",
                    product_object(product_id),
                    {"name": [product.name, name]},
                )
                product.name = name
        return self.get(product_id)

    def add_module(
        self, actor: str, product_id: str, code: str, name: str, price: Price | None
    ) -> ProductModule:
        name = clean_text(name)
        problems = [] if _CODE.fullmatch(code) else [("code", "a code like ai_forecast")]
        raise_problems(problems + _name_problems(name) + _price_problems(price))
        now = self._ctx.clock.now()
        try:
            with transaction(self._ctx.write) as session:
                if session.get(Product, product_id, with_for_update=True) is None:
                    raise NotFound("no such product")
                if session.get(ProductModule, (product_id, code)) is not None:
                    raise AlreadyExists("the product already has a module with this code")
                count = len(
                    session.scalars(
                        select(ProductModule.code).where(ProductModule.product_id == product_id)
                    ).all()
                )
                if count >= MAX_MODULES:
                    raise_problems([("code", f"a product has at most {MAX_MODULES} modules")])
                module = ProductModule(
                    product_id=product_id,
                    code=code,
                    name=name,
                    list_price_minor=price.amount_minor if price else None,
                    currency=price.currency if price else None,
                )
                session.add(module)
                record(
                    session,
                    now,
                    actor,
                    "product.module_add",
                    product_object(product_id, code),
                    _module_state(module),
                )
                return module
        except IntegrityError as exc:
            raise AlreadyExists("the product already has a module with this code") from exc

    def update_module(
        self,
        actor: str,
        product_id: str,
        code: str,
        *,
        name: str | None = None,
        price: Price | None = None,
        clear_price: bool = False,
    ) -> ProductModule:
        """Rename a module and/or set (or clear) its list price."""
        name = clean_text(name) if name is not None else None
        raise_problems((_name_problems(name) if name is not None else []) + _price_problems(price))
        now = self._ctx.clock.now()
        with transaction(self._ctx.write) as session:
            module = self._module(session, product_id, code)
            before = _module_state(module)
            if name is not None:
                module.name = name
            if price is not None:
                module.list_price_minor, module.currency = price.amount_minor, price.currency
            elif clear_price:
                module.list_price_minor, module.currency = None, None
            after = _module_state(module)
            diff = {k: [before[k], after[k]] for k in after if before[k] != after[k]}
            if diff:
                record(
                    session,
                    now,
                    actor,
                    "product.module_update",
                    product_object(product_id, code),
                    diff,
                )
            return module

    def retire_module(self, actor: str, product_id: str, code: str) -> ProductModule:
        """Retire a module (idempotent): licenses that name it keep it, new ones may not."""
        now = self._ctx.clock.now()
        with transaction(self._ctx.write) as session:
            module = self._module(session, product_id, code)
            if module.retired_at is None:
                module.retired_at = now
                record(
                    session, now, actor, "product.module_retire", product_object(product_id, code)
                )
            return module

    @staticmethod
    def _module(session: Session, product_id: str, code: str) -> ProductModule:
        module = session.get(ProductModule, (product_id, code), with_for_update=True)
        if module is None:
            raise NotFound("no such module of this product")
        return module


def _module_state(module: ProductModule) -> dict[str, object]:
    return {
        "name": module.name,
        "list_price_minor": module.list_price_minor,
        "currency": module.currency,
    }
