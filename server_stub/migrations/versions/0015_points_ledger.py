"""points_ledger: the points wallet as a double-entry ledger (issue #13, docs/points.md)

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

import server_stub.models

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

_UTC = server_stub.models.UTCDateTime
_KINDS = (
    "kind IN ('grant', 'purchase', 'spend', 'hold', 'hold_commit', 'hold_release', "
    "'refund', 'reversal', 'expiry', 'adjustment', 'topup', 'settlement')"
)


def upgrade() -> None:
    op.create_table(
        "points_holds",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("user_id", sa.String(length=36), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("used", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.String(length=10), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=True),
        sa.Column("idempotency_key", sa.String(length=255), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("lots", sa.JSON(), nullable=False),
        sa.Column("expires_at", _UTC(timezone=True), nullable=False),
        sa.Column("created_at", _UTC(timezone=True), nullable=False),
        sa.Column("settled_at", _UTC(timezone=True), nullable=True),
        sa.CheckConstraint(
            "state IN ('held', 'committed', 'released', 'expired')",
            name=op.f("ck_points_holds_state"),
        ),
        sa.CheckConstraint("amount > 0", name=op.f("ck_points_holds_amount_positive")),
        sa.CheckConstraint(
            "used >= 0 AND used <= amount", name=op.f("ck_points_holds_used_within_amount")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_points_holds_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_points_holds")),
        sa.UniqueConstraint("user_id", "idempotency_key", name="uq_points_holds_user_key"),
    )
    op.create_index(
        "ix_points_holds_state_expires", "points_holds", ["state", "expires_at"], unique=False
    )
    op.create_table(
        "points_transactions",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("user_id", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=True),
        sa.Column("idempotency_key", sa.String(length=255), nullable=True),
        sa.Column("request_hash", sa.String(length=64), nullable=True),
        sa.Column("external_ref", sa.String(length=255), nullable=True),
        sa.Column("actor", sa.String(length=100), nullable=False),
        sa.Column("wallet_delta", sa.BigInteger(), nullable=False),
        sa.Column("balance_after", sa.BigInteger(), nullable=False),
        sa.Column("messages", sa.BigInteger(), nullable=True),
        sa.Column("expires_at", _UTC(timezone=True), nullable=True),
        sa.Column("created_at", _UTC(timezone=True), nullable=False),
        sa.CheckConstraint(
            _KINDS,
            name=op.f("ck_points_transactions_kind"),
        ),
        sa.CheckConstraint("amount > 0", name=op.f("ck_points_transactions_amount_positive")),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_points_transactions_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_points_transactions")),
        sa.UniqueConstraint("kind", "external_ref", name="uq_points_transactions_kind_ref"),
        sa.UniqueConstraint("user_id", "idempotency_key", name="uq_points_transactions_user_key"),
    )
    op.create_index(
        "ix_points_transactions_user_created",
        "points_transactions",
        ["user_id", "created_at", "id"],
        unique=False,
    )
    op.create_table(
        "points_wallets",
        sa.Column("user_id", sa.String(length=36), nullable=False),
        sa.Column("balance", sa.BigInteger(), nullable=False),
        sa.Column("held", sa.BigInteger(), nullable=False),
        sa.Column("shortfall", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", _UTC(timezone=True), nullable=False),
        sa.CheckConstraint("balance >= 0", name=op.f("ck_points_wallets_balance_not_negative")),
        sa.CheckConstraint("held >= 0", name=op.f("ck_points_wallets_held_not_negative")),
        sa.CheckConstraint("shortfall >= 0", name=op.f("ck_points_wallets_shortfall_not_negative")),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_points_wallets_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_points_wallets")),
    )
    op.create_table(
        "points_entries",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("transaction_id", sa.String(length=36), nullable=False),
        sa.Column("user_id", sa.String(length=36), nullable=False),
        sa.Column("account", sa.String(length=16), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(
            "account IN ('wallet', 'held', 'issued', 'spent', 'expired', 'owed')",
            name=op.f("ck_points_entries_account"),
        ),
        sa.CheckConstraint("amount <> 0", name=op.f("ck_points_entries_amount_not_zero")),
        sa.ForeignKeyConstraint(
            ["transaction_id"],
            ["points_transactions.id"],
            name=op.f("fk_points_entries_transaction_id_points_transactions"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_points_entries_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_points_entries")),
    )
    op.create_index(
        op.f("ix_points_entries_transaction_id"), "points_entries", ["transaction_id"], unique=False
    )
    op.create_index(
        "ix_points_entries_user_account", "points_entries", ["user_id", "account"], unique=False
    )
    op.create_table(
        "points_lots",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("user_id", sa.String(length=36), nullable=False),
        sa.Column("transaction_id", sa.String(length=36), nullable=False),
        sa.Column("granted", sa.BigInteger(), nullable=False),
        sa.Column("remaining", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", _UTC(timezone=True), nullable=True),
        sa.Column("created_at", _UTC(timezone=True), nullable=False),
        sa.CheckConstraint(
            "remaining <= granted", name=op.f("ck_points_lots_remaining_at_most_granted")
        ),
        sa.CheckConstraint("remaining >= 0", name=op.f("ck_points_lots_remaining_not_negative")),
        sa.ForeignKeyConstraint(
            ["transaction_id"],
            ["points_transactions.id"],
            name=op.f("fk_points_lots_transaction_id_points_transactions"),
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_points_lots_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_points_lots")),
    )
    op.create_index("ix_points_lots_expires_at", "points_lots", ["expires_at"], unique=False)
    op.create_index(
        "ix_points_lots_user_open", "points_lots", ["user_id", "remaining"], unique=False
    )

    with op.batch_alter_table("plans") as batch:
        batch.add_column(
            sa.Column("topup_messages_per_point", sa.Integer(), server_default="0", nullable=False)
        )


def downgrade() -> None:
    # Natively (SQLite 3.35+): a batch "recreate" of plans would copy billing's CHECKs as
    # table constraints, and 0011's downgrade could then no longer drop their columns.
    with op.batch_alter_table("plans", recreate="never") as batch:
        batch.drop_column("topup_messages_per_point")
    op.drop_index("ix_points_lots_user_open", table_name="points_lots")
    op.drop_index("ix_points_lots_expires_at", table_name="points_lots")
    op.drop_table("points_lots")
    op.drop_index("ix_points_entries_user_account", table_name="points_entries")
    op.drop_index(op.f("ix_points_entries_transaction_id"), table_name="points_entries")
    op.drop_table("points_entries")
    op.drop_table("points_wallets")
    op.drop_index("ix_points_transactions_user_created", table_name="points_transactions")
    op.drop_table("points_transactions")
    op.drop_index("ix_points_holds_state_expires", table_name="points_holds")
    op.drop_table("points_holds")
