"""store_purchases: the store's products and purchases; RuStore's webhooks in the inbox
(issue #13, docs/points.md, "Store purchases (RuStore)")

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

import server_stub.models

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

_UTC = server_stub.models.UTCDateTime
_PROVIDER_CHECK = "ck_webhook_inbox_provider_known"


def upgrade() -> None:
    op.create_table(
        "store_products",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("price_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("points", sa.BigInteger(), nullable=True),
        sa.Column("plan", sa.String(length=64), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", _UTC(timezone=True), nullable=False),
        sa.Column("updated_at", _UTC(timezone=True), nullable=False),
        sa.CheckConstraint(
            "kind IN ('consumable', 'subscription')", name=op.f("ck_store_products_kind_known")
        ),
        sa.CheckConstraint(
            "(kind = 'consumable' AND points > 0 AND plan IS NULL) OR "
            "(kind = 'subscription' AND plan IS NOT NULL AND points IS NULL)",
            name=op.f("ck_store_products_grants_one_thing"),
        ),
        sa.CheckConstraint("price_minor >= 0", name=op.f("ck_store_products_price_not_negative")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_store_products")),
    )
    op.create_table(
        "store_purchases",
        sa.Column("ref", sa.String(length=200), nullable=False),
        sa.Column("store", sa.String(length=16), nullable=False),
        sa.Column("invoice_id", sa.String(length=150), nullable=False),
        sa.Column("user_id", sa.String(length=36), nullable=True),
        sa.Column("product_id", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("status_rank", sa.Integer(), nullable=False),
        sa.Column("status_at", _UTC(timezone=True), nullable=False),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.Column("created_at", _UTC(timezone=True), nullable=False),
        sa.Column("updated_at", _UTC(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("ref", name=op.f("pk_store_purchases")),
    )
    op.create_index("ix_store_purchases_user", "store_purchases", ["user_id"], unique=False)
    _provider_check("provider IN ('stripe', 'cloudpayments', 'rustore')")


def downgrade() -> None:
    op.execute("DELETE FROM webhook_inbox WHERE provider = 'rustore'")
    _provider_check("provider IN ('stripe', 'cloudpayments')")
    op.drop_index("ix_store_purchases_user", table_name="store_purchases")
    op.drop_table("store_purchases")
    op.drop_table("store_products")


def _provider_check(condition: str) -> None:
    with op.batch_alter_table("webhook_inbox") as batch:
        batch.drop_constraint(op.f(_PROVIDER_CHECK), type_="check")
        batch.create_check_constraint("provider_known", condition)
