"""marketplace: the outbox of install/uninstall callbacks

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

import server_stub.models

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "marketplace_outbox",
        sa.Column("seq", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("backend_id", sa.String(length=36), nullable=False),
        sa.Column("app_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("created_at", server_stub.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", server_stub.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("delivered_at", server_stub.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("failed_at", server_stub.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.CheckConstraint(
            "kind IN ('installed', 'uninstalled')", name=op.f("ck_marketplace_outbox_kind_known")
        ),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_marketplace_outbox")),
        sa.UniqueConstraint("id", name=op.f("uq_marketplace_outbox_id")),
    )
    with op.batch_alter_table("marketplace_outbox", schema=None) as batch_op:
        batch_op.create_index("ix_marketplace_outbox_due", ["next_attempt_at"], unique=False)
        batch_op.create_index(
            "ix_marketplace_outbox_backend_app",
            ["backend_id", "app_id", "seq"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("marketplace_outbox", schema=None) as batch_op:
        batch_op.drop_index("ix_marketplace_outbox_backend_app")
        batch_op.drop_index("ix_marketplace_outbox_due")

    op.drop_table("marketplace_outbox")
