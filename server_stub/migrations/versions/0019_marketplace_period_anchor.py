"""marketplace_period_anchor: the anchor of a paid marketplace license's periods
(docs/marketplace.md, "License lifecycle", "Anchored periods")

A renewal computed the new end as the old end plus a month (or a year), so a license first paid
on Jan 31 ended on Feb 28, then Mar 28, Apr 28…: a day lost for good at each short month. The
ends are now computed from a fixed anchor (``anchor + n`` months, as billing's periods are), and
the anchor is kept in ``backend_licenses.period_anchor``.

No backfill: a license paid before this migration has no anchor, and its next renewal takes one
from its current period (services/marketplace/periods.py); an anchor cannot be recovered in SQL
anyway (the calendar arithmetic is Python's). The downgrade drops the column: renewals go back to
adding a period to the end.

Revision ID: 0019
Revises: 0018
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

import server_stub.models

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("backend_licenses") as batch:
        batch.add_column(
            sa.Column("period_anchor", server_stub.models.UTCDateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("backend_licenses") as batch:
        batch.drop_column("period_anchor")
