"""staff accounts and sessions; the one hash-chained audit log with its signed checkpoints

The marketplace's audit records move into the log: they are copied in their order, the chain is
computed here, and ``marketplace_audit`` is dropped. The downgrade copies the marketplace's
entries back.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30
"""

from typing import Any

import sqlalchemy as sa
from alembic import op

import server_stub.models
from agent.protocol import AUDIT_GENESIS_HASH, audit_entry_hash, audit_time

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_UTC = server_stub.models.UTCDateTime


def _marketplace_object(backend_id: str | None, app_id: str | None) -> str:
    # Frozen copy of services.marketplace.audit.marketplace_object as of this revision.
    path = "marketplace"
    if backend_id is not None:
        path += f"/backend/{backend_id}"
    if app_id is not None:
        path += f"/app/{app_id}"
    return path


def _old_table() -> sa.TableClause:
    return sa.table(
        "marketplace_audit",
        sa.column("id", sa.Integer()),
        sa.column("at", _UTC()),
        sa.column("actor", sa.String()),
        sa.column("action", sa.String()),
        sa.column("backend_id", sa.String()),
        sa.column("app_id", sa.String()),
        sa.column("before", sa.JSON()),
        sa.column("after", sa.JSON()),
    )


def _log_table() -> sa.TableClause:
    return sa.table(
        "audit_log",
        sa.column("seq", sa.BigInteger()),
        sa.column("at", _UTC()),
        sa.column("actor", sa.String()),
        sa.column("action", sa.String()),
        sa.column("object", sa.String()),
        sa.column("details", sa.JSON()),
        sa.column("prev_hash", sa.String()),
        sa.column("hash", sa.String()),
    )


def _create_marketplace_audit() -> None:
    op.create_table(
        "marketplace_audit",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at", _UTC(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=100), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("backend_id", sa.String(length=36), nullable=True),
        sa.Column("app_id", sa.String(length=64), nullable=True),
        sa.Column("before", sa.JSON(), nullable=True),
        sa.Column("after", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_marketplace_audit")),
    )
    with op.batch_alter_table("marketplace_audit", schema=None) as batch_op:
        batch_op.create_index("ix_marketplace_audit_at", ["at"], unique=False)
        batch_op.create_index(
            "ix_marketplace_audit_backend_app", ["backend_id", "app_id"], unique=False
        )


def upgrade() -> None:
    op.create_table(
        "staff",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("created_at", _UTC(timezone=True), nullable=False),
        sa.Column("disabled_at", _UTC(timezone=True), nullable=True),
        sa.Column("totp_secret", sa.String(length=64), nullable=True),
        sa.Column("totp_enabled_at", _UTC(timezone=True), nullable=True),
        sa.Column("totp_last_step", sa.BigInteger(), nullable=True),
        sa.CheckConstraint(
            "role IN ('admin', 'sales', 'implementation', 'support', 'audit')",
            name=op.f("ck_staff_role_known"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_staff")),
        sa.UniqueConstraint("email", name=op.f("uq_staff_email")),
    )
    op.create_table(
        "staff_recovery_codes",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("staff_id", sa.String(length=36), nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("used_at", _UTC(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["staff_id"],
            ["staff.id"],
            name=op.f("fk_staff_recovery_codes_staff_id_staff"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_staff_recovery_codes")),
    )
    op.create_index("ix_staff_recovery_codes_staff", "staff_recovery_codes", ["staff_id"])
    op.create_table(
        "staff_sessions",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("staff_id", sa.String(length=36), nullable=False),
        sa.Column("amr", sa.JSON(), nullable=False),
        sa.Column("created_at", _UTC(timezone=True), nullable=False),
        sa.Column("expires_at", _UTC(timezone=True), nullable=False),
        sa.Column("revoked_at", _UTC(timezone=True), nullable=True),
        sa.Column("revoked_reason", sa.String(length=32), nullable=True),
        sa.ForeignKeyConstraint(
            ["staff_id"],
            ["staff.id"],
            name=op.f("fk_staff_sessions_staff_id_staff"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_staff_sessions")),
    )
    op.create_index("ix_staff_sessions_staff", "staff_sessions", ["staff_id"])
    op.create_table(
        "staff_refresh_tokens",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("session_id", sa.String(length=36), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", _UTC(timezone=True), nullable=False),
        sa.Column("used_at", _UTC(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["staff_sessions.id"],
            name=op.f("fk_staff_refresh_tokens_session_id_staff_sessions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_staff_refresh_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_staff_refresh_tokens_token_hash")),
    )
    op.create_index("ix_staff_refresh_tokens_session", "staff_refresh_tokens", ["session_id"])
    op.create_table(
        "audit_log",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("at", _UTC(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=100), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("object", sa.String(length=300), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_audit_log")),
    )
    op.create_index("ix_audit_log_at", "audit_log", ["at"])
    op.create_index("ix_audit_log_actor", "audit_log", ["actor", "seq"])
    op.create_index("ix_audit_log_object", "audit_log", ["object", "seq"])
    op.create_table(
        "audit_checkpoints",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("signed_at", _UTC(timezone=True), nullable=False),
        sa.Column("jws", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_audit_checkpoints")),
    )
    _move_marketplace_audit()
    with op.batch_alter_table("marketplace_audit", schema=None) as batch_op:
        batch_op.drop_index("ix_marketplace_audit_backend_app")
        batch_op.drop_index("ix_marketplace_audit_at")
    op.drop_table("marketplace_audit")


def _move_marketplace_audit() -> None:
    conn = op.get_bind()
    old = _old_table()
    rows = conn.execute(sa.select(old).order_by(old.c.id)).mappings()
    prev = AUDIT_GENESIS_HASH
    batch: list[dict[str, Any]] = []
    log = _log_table()
    for seq, row in enumerate(rows, start=1):
        entry: dict[str, Any] = {
            "seq": seq,
            "at": audit_time(row["at"]),
            "actor": row["actor"],
            "action": row["action"],
            "object": _marketplace_object(row["backend_id"], row["app_id"]),
            "details": {"before": row["before"], "after": row["after"]},
            "prev_hash": prev,
        }
        prev = audit_entry_hash(entry)
        batch.append({**entry, "at": row["at"], "hash": prev})
        if len(batch) >= 500:
            conn.execute(log.insert(), batch)
            batch = []
    if batch:
        conn.execute(log.insert(), batch)


def downgrade() -> None:
    _create_marketplace_audit()
    conn = op.get_bind()
    log = _log_table()
    old = _old_table()
    rows = conn.execute(
        sa.select(log).where(log.c.object.like("marketplace%")).order_by(log.c.seq)
    ).mappings()
    for row in rows:
        parts = row["object"].split("/")
        named = dict(zip(parts[1::2], parts[2::2], strict=False))
        details = row["details"] or {}
        conn.execute(
            old.insert().values(
                at=row["at"],
                actor=row["actor"],
                action=row["action"],
                backend_id=named.get("backend"),
                app_id=named.get("app"),
                before=details.get("before"),
                after=details.get("after"),
            )
        )
    op.drop_table("audit_checkpoints")
    op.drop_index("ix_audit_log_object", table_name="audit_log")
    op.drop_index("ix_audit_log_actor", table_name="audit_log")
    op.drop_index("ix_audit_log_at", table_name="audit_log")
    op.drop_table("audit_log")
    op.drop_index("ix_staff_refresh_tokens_session", table_name="staff_refresh_tokens")
    op.drop_table("staff_refresh_tokens")
    op.drop_index("ix_staff_sessions_staff", table_name="staff_sessions")
    op.drop_table("staff_sessions")
    op.drop_index("ix_staff_recovery_codes_staff", table_name="staff_recovery_codes")
    op.drop_table("staff_recovery_codes")
    op.drop_table("staff")
