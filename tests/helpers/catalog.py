"""The product catalogue for tests that seed portal rows through the ORM.

Migration 0009 seeds the product ``tgflow`` with its default modules on a fresh database, so a
test adds what it needs to that product rather than creating it: one home for that rule.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime

from sqlalchemy import update
from sqlalchemy.orm import Session

from server_stub.portal_models import Product, ProductModule

PRODUCT = "tgflow"


def ensure_catalog(
    session: Session,
    now: datetime,
    modules: Mapping[str, int | None] | Iterable[str] = (),
    *,
    retired: Iterable[str] = (),
    currency: str | None = None,
    only: bool = False,
) -> None:
    """The product ``tgflow`` with ``modules`` (code → yearly list price, or codes alone) and the
    ``retired`` ones, each added if missing; ``only`` retires every other module, so figures by
    module see just these."""
    if session.get(Product, PRODUCT) is None:
        session.add(Product(id=PRODUCT, name="TGFlow", created_at=now))
        session.flush()
    prices = dict(modules) if isinstance(modules, Mapping) else dict.fromkeys(modules)
    for code, price in prices.items():
        row = session.get(ProductModule, (PRODUCT, code))
        if row is None:
            session.add(
                ProductModule(
                    product_id=PRODUCT,
                    code=code,
                    name=code.title(),
                    list_price_minor=price,
                    currency=currency if price is not None else None,
                )
            )
        elif price is not None:
            row.list_price_minor, row.currency = price, currency
    for code in retired:
        if session.get(ProductModule, (PRODUCT, code)) is None:
            session.add(
                ProductModule(product_id=PRODUCT, code=code, name=code.title(), retired_at=now)
            )
    if only:
        session.flush()
        session.execute(
            update(ProductModule)
            .where(
                ProductModule.product_id == PRODUCT,
                ProductModule.code.not_in([*prices, *retired]),
                ProductModule.retired_at.is_(None),
            )
            .values(retired_at=now)
        )
