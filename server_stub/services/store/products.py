"""The store's product catalogue: operator-managed, audited, served from memory for
``products_cache_ttl_seconds`` (``GET /products`` is asked by every app start)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from ...db import transaction
from ...errors import AlreadyExists, NotFound, ValidationFailed
from ...store_models import StoreProduct
from ..audit import record
from ..context import ServiceContext


@dataclass(frozen=True)
class Product:
    id: str
    kind: str
    title: str
    price_minor: int
    currency: str
    points: int | None
    plan: str | None
    active: bool


@dataclass(frozen=True)
class ProductChanges:
    """A PATCH: ``None`` leaves a field as it is (a product's id and kind never change)."""

    title: str | None = None
    price_minor: int | None = None
    currency: str | None = None
    points: int | None = None
    plan: str | None = None
    active: bool | None = None

    def given(self) -> dict[str, Any]:
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        return {k: v for k, v in values.items() if v is not None}


def _product(row: StoreProduct) -> Product:
    return Product(
        row.id,
        row.kind,
        row.title,
        row.price_minor,
        row.currency,
        row.points,
        row.plan,
        row.active,
    )


def _check(product: Product) -> None:
    # The database refuses these too; a clear 422 first.
    if product.kind == "consumable" and (product.points is None or product.plan is not None):
        raise ValidationFailed("a consumable grants points (and no plan)")
    if product.kind == "subscription" and (product.plan is None or product.points is not None):
        raise ValidationFailed("a subscription grants a plan (and no points)")


class ProductCatalog:
    def __init__(self, ctx: ServiceContext) -> None:
        self._ctx = ctx
        self._lock = threading.Lock()
        self._cached: tuple[datetime, list[Product]] | None = None

    def active(self) -> list[Product]:
        """The products on sale, from memory while younger than the configured TTL."""
        now = self._ctx.clock.now()
        ttl = timedelta(seconds=self._ctx.settings.products_cache_ttl_seconds)
        with self._lock:
            if self._cached is not None and now - self._cached[0] < ttl:
                return self._cached[1]
        products = [p for p in self.all() if p.active]
        with self._lock:
            self._cached = (now, products)
        return products

    def all(self) -> list[Product]:
        with transaction(self._ctx.read) as session:
            rows = session.scalars(select(StoreProduct).order_by(StoreProduct.id))
            return [_product(row) for row in rows]

    def get(self, product_id: str) -> Product | None:
        """Read from the database (a purchase is judged against the catalogue as it is now)."""
        with transaction(self._ctx.read) as session:
            row = session.get(StoreProduct, product_id)
            return _product(row) if row is not None else None

    def create(self, actor: str, product: Product) -> Product:
        _check(product)
        now = self._ctx.clock.now()
        with transaction(self._ctx.write) as session:
            if session.get(StoreProduct, product.id) is not None:
                raise AlreadyExists(f"a product {product.id!r} already exists")
            row = StoreProduct(**vars(product), created_at=now, updated_at=now)
            session.add(row)
            record(session, now, actor, "store.product.create", _object(product.id), vars(product))
        self._forget()
        return product

    def change(self, actor: str, product_id: str, changes: ProductChanges) -> Product:
        values = changes.given()
        now = self._ctx.clock.now()
        with transaction(self._ctx.write) as session:
            row = session.get(StoreProduct, product_id, with_for_update=True)
            if row is None:
                raise NotFound(f"no product {product_id!r}")
            before = vars(_product(row))
            changed = Product(**{**before, **values})
            _check(changed)
            for key, value in values.items():
                setattr(row, key, value)
            row.updated_at = now
            record(
                session,
                now,
                actor,
                "store.product.change",
                _object(product_id),
                {"before": before, "after": vars(changed)},
            )
        self._forget()
        return changed

    def _forget(self) -> None:
        # This process sees its own change at once; the others within the TTL.
        with self._lock:
            self._cached = None


def _object(product_id: str) -> str:
    return f"store/products/{product_id}"
