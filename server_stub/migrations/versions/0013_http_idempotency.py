"""http_idempotency: the Idempotency-Key store of money-moving POSTs (first response, 24 h)

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

import server_stub.models

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

_UTC = server_stub.models.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "http_idempotency",
        sa.Column("scope", sa.String(length=100), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("token", sa.String(length=36), nullable=False),
        sa.Column("lease_until", _UTC(timezone=True), nullable=False),
        sa.Column("created_at", _UTC(timezone=True), nullable=False),
        sa.Column("expires_at", _UTC(timezone=True), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("headers", sa.JSON(), nullable=True),
        sa.Column("body", sa.LargeBinary(), nullable=True),
        sa.CheckConstraint(
            "state IN ('in_progress', 'done')", name=op.f("ck_http_idempotency_state")
        ),
        sa.PrimaryKeyConstraint("scope", "key", name=op.f("pk_http_idempotency")),
    )
    with op.batch_alter_table("http_idempotency", schema=None) as batch_op:
        batch_op.create_index("ix_http_idempotency_expires_at", ["expires_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("http_idempotency", schema=None) as batch_op:
        batch_op.drop_index("ix_http_idempotency_expires_at")
    op.drop_table("http_idempotency")
