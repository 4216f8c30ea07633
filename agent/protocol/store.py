"""Store purchases' wire contract (docs/points.md, "Store purchases (RuStore)"): the product
catalogue, and verifying a store purchase into points or a plan.

Prices are integer minor units of an ISO 4217 currency. A verify is answered only after the
server committed what the purchase grants, so the client is never ahead of the server.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Final

from pydantic import StringConstraints

from .core import _Request, _Response
from .points import PointsBalance

#: A store's product id (RuStore's ``productCode``).
PRODUCT_ID_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
ProductId = Annotated[str, StringConstraints(pattern=PRODUCT_ID_PATTERN)]
#: A store's purchase (RuStore's invoice id) or order id.
StoreRef = Annotated[
    str, StringConstraints(min_length=1, max_length=150, pattern=r"^[A-Za-z0-9_.:\-]+$")
]
#: A store subscription's token: RuStore's run to thousands of characters (kept whole).
SUBSCRIPTION_TOKEN_MAX: Final = 4096
SubscriptionToken = Annotated[
    str,
    StringConstraints(
        min_length=1, max_length=SUBSCRIPTION_TOKEN_MAX, pattern=r"^[A-Za-z0-9_.:\-]+$"
    ),
]


class StoreName(StrEnum):
    """The stores whose purchases the server verifies."""

    RUSTORE = "rustore"


class ProductKind(StrEnum):
    CONSUMABLE = "consumable"
    SUBSCRIPTION = "subscription"


class ProductOut(_Response):
    id: str
    kind: ProductKind
    title: str
    price_minor: int
    currency: str
    #: Points a consumable grants (``None`` for a subscription).
    points: int | None
    #: The plan a subscription grants (``None`` for a consumable).
    plan: str | None


class ProductList(_Response):
    products: list[ProductOut]


class PaymentVerifyRequest(_Request):
    provider: StoreName
    #: The store's id of the purchase (RuStore's ``invoiceId``).
    purchase_id: StoreRef
    #: The app's order id, when it set one: checked against the store's.
    order_id: StoreRef | None = None
    product_id: ProductId


class PointsBuyRequest(_Request):
    provider: StoreName
    purchase_id: StoreRef
    product_id: ProductId


class PurchaseVerified(_Response):
    purchase_id: str
    product_id: str
    #: The store's status after the server's confirmation (``CONFIRMED``).
    status: str
    #: Points this purchase credited (0 for a subscription).
    points: int
    #: True when this purchase had already been credited (a repeated verify, or the store's
    #: notification came first).
    replayed: bool
    balance: PointsBalance
    #: The store has not taken the payment yet (``CREATED``, ``EXECUTED``; answered with 202):
    #: nothing was credited, ask again. A purchase that ended unpaid is a 422 instead.
    pending: bool = False


class SubscriptionVerifyRequest(_Request):
    provider: StoreName
    subscription_token: SubscriptionToken
    product_id: ProductId


class StoreSubscriptionVerified(_Response):
    product_id: str
    plan: str
    #: The store's ``is_active`` (PROMO, START, STANDARD, GRACE: active; HOLD or ended: not).
    active: bool
