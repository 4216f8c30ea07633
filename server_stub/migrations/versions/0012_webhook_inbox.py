"""the webhook inbox: provider webhooks stored raw, deduplicated, and queued for the worker

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

import server_stub.models

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    when = server_stub.models.UTCDateTime(timezone=True)
    op.create_table(
        "webhook_inbox",
        sa.Column("seq", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("event_id", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("headers", sa.JSON(), nullable=False),
        sa.Column("received_at", when, nullable=False),
        sa.Column("event_at", when, nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", when, nullable=True),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.Column("claimed_by", sa.String(length=100), nullable=True),
        sa.Column("claimed_until", when, nullable=True),
        sa.Column("applied_at", when, nullable=True),
        sa.CheckConstraint(
            "status IN ('queued', 'applied', 'failed', 'dead', 'ignored')",
            name=op.f("ck_webhook_inbox_status_known"),
        ),
        sa.CheckConstraint(
            "provider IN ('stripe', 'cloudpayments')",
            name=op.f("ck_webhook_inbox_provider_known"),
        ),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_webhook_inbox")),
        sa.UniqueConstraint("provider", "event_id", name="uq_webhook_inbox_provider_event"),
    )
    op.create_index(
        "ix_webhook_inbox_due", "webhook_inbox", ["status", "next_attempt_at", "seq"], unique=False
    )
    op.create_index("ix_webhook_inbox_received", "webhook_inbox", ["received_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_webhook_inbox_received", table_name="webhook_inbox")
    op.drop_index("ix_webhook_inbox_due", table_name="webhook_inbox")
    op.drop_table("webhook_inbox")
