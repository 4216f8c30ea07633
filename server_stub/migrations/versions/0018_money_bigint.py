"""money_bigint: a plan's price and a subscription's price as 64-bit integers

The API takes prices up to ``MAX_PRICE_MINOR`` (10**11 minor units), but ``plans.price_minor``
and ``billing_subscriptions.price_minor`` were INTEGER: 32 bits on PostgreSQL, which refused a
price over 2**31 - 1 (the reliability suite's fuzz run found it as a 503). Every other money
column is already BIGINT. SQLite stores any INTEGER in 64 bits: there the columns already hold
such prices, and the declared type is changed in place (no table rebuild, which ``plans``, the
target of several foreign keys, must not go through).

Revision ID: 0018
Revises: 0017
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

_COLUMNS = (("plans", "price_minor"), ("billing_subscriptions", "price_minor"))


def upgrade() -> None:
    _retype(sa.Integer(), sa.BigInteger())


def downgrade() -> None:
    _retype(sa.BigInteger(), sa.Integer())


def _retype(old: sa.types.TypeEngine[int], new: sa.types.TypeEngine[int]) -> None:
    if op.get_bind().dialect.name == "sqlite":
        # SQLite's INTEGER affinity is 64 bits whatever the declared type: nothing to convert.
        return
    for table, column in _COLUMNS:
        op.alter_column(table, column, type_=new, existing_type=old, existing_nullable=False)
