"""usage: remember refused reserves under their correlation_id

A refused reserve is recorded like a granted one, so that a replay gets the same refusal and the
id can never hold quota later within the window. ``reservation_id`` is empty for a refusal.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("idempotency_keys", schema=None) as batch_op:
        batch_op.alter_column("reservation_id", existing_type=sa.String(length=36), nullable=True)
        batch_op.add_column(sa.Column("refused_detail", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("refused_remaining", sa.Integer(), nullable=True))


def downgrade() -> None:
    op.execute("DELETE FROM idempotency_keys WHERE reservation_id IS NULL")
    with op.batch_alter_table("idempotency_keys", schema=None) as batch_op:
        batch_op.drop_column("refused_remaining")
        batch_op.drop_column("refused_detail")
        batch_op.alter_column("reservation_id", existing_type=sa.String(length=36), nullable=False)
