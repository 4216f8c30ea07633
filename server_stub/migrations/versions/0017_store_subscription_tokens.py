"""store_subscription_tokens: a store subscription's token kept whole, its purchase keyed by
the token's SHA-256 (issue #13, docs/points.md, "Store purchases (RuStore)")

0016 keyed a subscription's purchase by ``rustore-sub:<token>`` cut at 200 characters, so a
token longer than 188 was kept cut (and two tokens alike in their first 188 were one purchase).
Now ``invoice_id`` holds the whole token (TEXT: RuStore's tokens run to thousands of
characters) and ``ref``, the primary key and idempotency key, is ``rustore-sub:sha256:<hex>``:
an exact match of the whole token in 83 characters, which every database can index. The billing
subscription that names the purchase (``payment_method_ref``) follows. A ref 0016 cut cannot be
mended here (the rest of its token is gone): it stays as it was, and the app's next verify of
that token moves it to its new ref (services/store/subscriptions.py).

Revision ID: 0017
Revises: 0016
Create Date: 2026-11-30
"""

import hashlib

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

_OLD_PREFIX = "rustore-sub:"
_NEW_PREFIX = "rustore-sub:sha256:"
_OLD_LENGTH = 200

_purchases = sa.table(
    "store_purchases", sa.column("ref", sa.String()), sa.column("invoice_id", sa.String())
)
_subscriptions = sa.table(
    "billing_subscriptions",
    sa.column("provider", sa.String()),
    sa.column("payment_method_ref", sa.String()),
)


def upgrade() -> None:
    with op.batch_alter_table("store_purchases") as batch:
        batch.alter_column(
            "invoice_id", type_=sa.Text(), existing_type=sa.String(length=150), nullable=False
        )
    conn = op.get_bind()
    refs = conn.execute(
        sa.select(_purchases.c.ref).where(_purchases.c.ref.startswith(_OLD_PREFIX))
    ).scalars()
    for ref in list(refs):
        if ref.startswith(_NEW_PREFIX) or len(ref) >= _OLD_LENGTH:
            continue  # already new, or cut by 0016: its token is not whole to hash
        token = ref[len(_OLD_PREFIX) :]
        digest = hashlib.sha256(token.encode("utf-8")).hexdigest()
        _move(conn, ref, f"{_NEW_PREFIX}{digest}", token)


def downgrade() -> None:
    conn = op.get_bind()
    rows = conn.execute(
        sa.select(_purchases.c.ref, _purchases.c.invoice_id).where(
            _purchases.c.ref.startswith(_NEW_PREFIX)
        )
    ).all()
    for ref, token in rows:
        # 0016's ref, cut as 0016 cut it (a long token loses its tail again).
        _move(conn, ref, f"{_OLD_PREFIX}{token}"[:_OLD_LENGTH], token[:150])
    conn.execute(
        _purchases.update()
        .where(sa.func.length(_purchases.c.invoice_id) > 150)
        .values(invoice_id=sa.func.substr(_purchases.c.invoice_id, 1, 150))
    )
    with op.batch_alter_table("store_purchases") as batch:
        batch.alter_column(
            "invoice_id", type_=sa.String(length=150), existing_type=sa.Text(), nullable=False
        )


def _move(conn: sa.Connection, old: str, new: str, invoice_id: str) -> None:
    conn.execute(
        _purchases.update().where(_purchases.c.ref == old).values(ref=new, invoice_id=invoice_id)
    )
    conn.execute(
        _subscriptions.update()
        .where(
            _subscriptions.c.provider == "rustore",
            _subscriptions.c.payment_method_ref == old,
        )
        .values(payment_method_ref=new)
    )
