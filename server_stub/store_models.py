"""Store purchases' schema (issue #13, docs/points.md, "Store purchases (RuStore)").

``store_products`` is the operator's catalogue of what the app sells through a store: a
consumable grants points, a subscription grants a plan. ``store_purchases`` is what we know of
each store purchase (RuStore's invoice): whose it is, which product, the last status we applied
and the store's time of it, so that a late or repeated notification never moves it back. The
points themselves are the ledger's (points_models.py), keyed by the purchase.

Imported at the end of :mod:`server_stub.models`, so ``Base.metadata`` holds it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, CheckConstraint, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from agent.protocol import ProductKind

from .models import Base, UTCDateTime, one_of

PRODUCT_KINDS = ("consumable", "subscription")


class StoreProduct(Base):
    """One product of the store, by the store's own product id (RuStore's ``productCode``)."""

    __tablename__ = "store_products"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    title: Mapped[str] = mapped_column(String(200))
    price_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    #: Points a consumable grants (``None`` for a subscription).
    points: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    #: The plan a subscription grants (``None`` for a consumable).
    plan: Mapped[str | None] = mapped_column(String(64), nullable=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (
        CheckConstraint(one_of("kind", (k.value for k in ProductKind)), name="kind_known"),
        CheckConstraint(
            "(kind = 'consumable' AND points > 0 AND plan IS NULL) OR "
            "(kind = 'subscription' AND plan IS NOT NULL AND points IS NULL)",
            name="grants_one_thing",
        ),
        CheckConstraint("price_minor >= 0", name="price_not_negative"),
    )


class StorePurchase(Base):
    """One store purchase as we last applied it. ``status_rank`` orders the statuses (services/
    store/statuses.py): a status of a lower rank, or an older ``status_at``, is never applied."""

    __tablename__ = "store_purchases"

    #: ``<store>:<invoice id>`` (``rustore:12345``): the points ledger's ``external_ref`` too; a
    #: subscription's ``rustore-sub:sha256:<hex of its token>`` (services/store/subscriptions.py).
    ref: Mapped[str] = mapped_column(String(200), primary_key=True)
    store: Mapped[str] = mapped_column(String(16))
    #: The store's invoice id; a subscription's whole token (thousands of characters at most).
    invoice_id: Mapped[str] = mapped_column(Text)
    #: Whose it is: set by a verify, or by a notification whose purchase names a known user.
    user_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    product_id: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    status_rank: Mapped[int] = mapped_column(Integer)
    #: The store's time of ``status`` (``change_status_time``, or when we fetched it).
    status_at: Mapped[datetime] = mapped_column(UTCDateTime())
    #: Points credited for it (0 until credited, and for a subscription).
    points: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (Index("ix_store_purchases_user", "user_id"),)
