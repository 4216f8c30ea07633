"""license versions: the requester's note (invoice, link) and why a request was rejected

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("license_versions") as batch:
        batch.add_column(sa.Column("note", sa.String(length=500), nullable=True))
        batch.add_column(sa.Column("rejection_reason", sa.String(length=500), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("license_versions") as batch:
        batch.drop_column("rejection_reason")
        batch.drop_column("note")
