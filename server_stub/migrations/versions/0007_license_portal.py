"""the license portal: clients, contracts, payments, products and modules, licenses and their
signed versions, activations and their events, module usage, notes, settings, notifications

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

import server_stub.models

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "notifications",
        sa.Column("seq", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("dedupe_key", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("license_id", sa.String(length=36), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("created_at", server_stub.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", server_stub.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("delivered_at", server_stub.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("failed_at", server_stub.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.CheckConstraint(
            "channel IN ('smtp', 'webhook', 'telegram')",
            name=op.f("ck_notifications_channel_known"),
        ),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_notifications")),
        sa.UniqueConstraint("dedupe_key", name=op.f("uq_notifications_dedupe_key")),
    )
    op.create_index("ix_notifications_due", "notifications", ["next_attempt_at"], unique=False)
    op.create_index(
        "ix_notifications_license", "notifications", ["license_id", "seq"], unique=False
    )
    op.create_table(
        "portal_settings",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("value", sa.JSON(), nullable=False),
        sa.Column("updated_by", sa.String(length=100), nullable=False),
        sa.Column("updated_at", server_stub.models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_portal_settings")),
    )
    op.create_table(
        "products",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("created_at", server_stub.models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_products")),
    )
    op.create_table(
        "clients",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("legal_name", sa.String(length=300), nullable=False),
        sa.Column("inn", sa.String(length=12), nullable=False),
        sa.Column("segment", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("deployment", sa.String(length=16), nullable=False),
        sa.Column("manager_id", sa.String(length=36), nullable=True),
        sa.Column("contacts", sa.JSON(), nullable=False),
        sa.Column("created_at", server_stub.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", server_stub.models.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "deployment IN ('on_prem', 'saas')", name=op.f("ck_clients_deployment_known")
        ),
        sa.CheckConstraint(
            "status IN ('prospect', 'active', 'archived')", name=op.f("ck_clients_status_known")
        ),
        sa.ForeignKeyConstraint(
            ["manager_id"],
            ["staff.id"],
            name=op.f("fk_clients_manager_id_staff"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_clients")),
        sa.UniqueConstraint("inn", name=op.f("uq_clients_inn")),
    )
    op.create_index("ix_clients_created", "clients", ["created_at", "id"], unique=False)
    op.create_index("ix_clients_manager", "clients", ["manager_id", "created_at"], unique=False)
    op.create_index("ix_clients_segment", "clients", ["segment", "created_at"], unique=False)
    op.create_index("ix_clients_status", "clients", ["status", "created_at"], unique=False)
    op.create_table(
        "product_modules",
        sa.Column("product_id", sa.String(length=64), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("list_price_minor", sa.BigInteger(), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.Column("retired_at", server_stub.models.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["product_id"],
            ["products.id"],
            name=op.f("fk_product_modules_product_id_products"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("product_id", "code", name=op.f("pk_product_modules")),
    )
    op.create_table(
        "contracts",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("client_id", sa.String(length=36), nullable=False),
        sa.Column("number", sa.String(length=64), nullable=False),
        sa.Column("signed_on", sa.Date(), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("sla", sa.String(length=200), nullable=True),
        sa.Column("documents", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("paid_at", server_stub.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", server_stub.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", server_stub.models.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "status IN ('draft', 'signed', 'paid', 'closed')",
            name=op.f("ck_contracts_status_known"),
        ),
        sa.CheckConstraint("amount_minor >= 0", name=op.f("ck_contracts_amount_nonnegative")),
        sa.ForeignKeyConstraint(
            ["client_id"],
            ["clients.id"],
            name=op.f("fk_contracts_client_id_clients"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_contracts")),
        sa.UniqueConstraint("number", name=op.f("uq_contracts_number")),
    )
    op.create_index("ix_contracts_client", "contracts", ["client_id", "signed_on"], unique=False)
    op.create_table(
        "licenses",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("license_key", sa.String(length=128), nullable=False),
        sa.Column("client_id", sa.String(length=36), nullable=False),
        sa.Column("contract_id", sa.String(length=36), nullable=True),
        sa.Column("product_id", sa.String(length=64), nullable=False),
        sa.Column("plan", sa.String(length=16), nullable=False),
        sa.Column("modules", sa.JSON(), nullable=False),
        sa.Column("limits", sa.JSON(), nullable=False),
        sa.Column("valid_from", server_stub.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("valid_until", server_stub.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("grace_days", sa.Integer(), nullable=False),
        sa.Column("domain", sa.String(length=253), nullable=False),
        sa.Column("min_version", sa.String(length=32), nullable=False),
        sa.Column("max_version", sa.String(length=32), nullable=True),
        sa.Column("mandatory_min_version", sa.String(length=32), nullable=True),
        sa.Column("encrypted", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("max_activations", sa.Integer(), nullable=True),
        sa.Column("activations_per_hour", sa.Integer(), nullable=True),
        sa.Column("checkouts_per_hour", sa.Integer(), nullable=True),
        sa.Column("ip_ranges", sa.JSON(), nullable=False),
        sa.Column("heartbeat_window_s", sa.Integer(), nullable=False),
        sa.Column("created_by", sa.String(length=100), nullable=False),
        sa.Column("created_at", server_stub.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", server_stub.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("suspended_at", server_stub.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", server_stub.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("status_reason", sa.String(length=500), nullable=True),
        sa.CheckConstraint(
            "plan IN ('basic', 'advanced', 'enterprise')", name=op.f("ck_licenses_plan_known")
        ),
        sa.CheckConstraint(
            "status IN ('pending_approval', 'active', 'suspended', 'revoked')",
            name=op.f("ck_licenses_status_known"),
        ),
        sa.CheckConstraint("grace_days >= 0", name=op.f("ck_licenses_grace_nonnegative")),
        sa.CheckConstraint("heartbeat_window_s >= 60", name=op.f("ck_licenses_window_minimum")),
        sa.CheckConstraint("version >= 0", name=op.f("ck_licenses_version_nonnegative")),
        sa.ForeignKeyConstraint(
            ["client_id"],
            ["clients.id"],
            name=op.f("fk_licenses_client_id_clients"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["contract_id"],
            ["contracts.id"],
            name=op.f("fk_licenses_contract_id_contracts"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["product_id"],
            ["products.id"],
            name=op.f("fk_licenses_product_id_products"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_licenses")),
        sa.UniqueConstraint("license_key", name=op.f("uq_licenses_license_key")),
    )
    op.create_index("ix_licenses_client", "licenses", ["client_id", "created_at"], unique=False)
    op.create_index("ix_licenses_created", "licenses", ["created_at", "id"], unique=False)
    op.create_index("ix_licenses_status_until", "licenses", ["status", "valid_until"], unique=False)
    op.create_table(
        "payments",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("contract_id", sa.String(length=36), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("external_id", sa.String(length=128), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("paid_at", server_stub.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("received_at", server_stub.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("raw", sa.JSON(), nullable=False),
        sa.CheckConstraint("amount_minor >= 0", name=op.f("ck_payments_amount_nonnegative")),
        sa.ForeignKeyConstraint(
            ["contract_id"],
            ["contracts.id"],
            name=op.f("fk_payments_contract_id_contracts"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payments")),
        sa.UniqueConstraint("source", "external_id", name="uq_payments_source_external"),
    )
    op.create_index("ix_payments_contract", "payments", ["contract_id", "paid_at"], unique=False)
    op.create_table(
        "activation_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("license_id", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("at", server_stub.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("ip", sa.String(length=45), nullable=False),
        sa.Column("detail", sa.String(length=200), nullable=True),
        sa.CheckConstraint(
            "kind IN ('activate', 'checkout', 'replace', 'refused')",
            name=op.f("ck_activation_events_kind_known"),
        ),
        sa.ForeignKeyConstraint(
            ["license_id"],
            ["licenses.id"],
            name=op.f("fk_activation_events_license_id_licenses"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_activation_events")),
    )
    op.create_index(
        "ix_activation_events_license_kind_at",
        "activation_events",
        ["license_id", "kind", "at"],
        unique=False,
    )
    op.create_table(
        "activations",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("license_id", sa.String(length=36), nullable=False),
        sa.Column("fingerprint", sa.String(length=256), nullable=False),
        sa.Column("server_id", sa.String(length=200), nullable=False),
        sa.Column("ip", sa.String(length=45), nullable=False),
        sa.Column("product_version", sa.String(length=32), nullable=False),
        sa.Column("modules", sa.JSON(), nullable=False),
        sa.Column("file_version", sa.Integer(), nullable=False),
        sa.Column("activated_at", server_stub.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column(
            "last_heartbeat_at", server_stub.models.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column("heartbeats", sa.BigInteger(), nullable=False),
        sa.Column("errors", sa.JSON(), nullable=False),
        sa.Column("deactivated_at", server_stub.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("deactivated_reason", sa.String(length=16), nullable=True),
        sa.ForeignKeyConstraint(
            ["license_id"],
            ["licenses.id"],
            name=op.f("fk_activations_license_id_licenses"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_activations")),
    )
    op.create_index(
        "ix_activations_fingerprint", "activations", ["license_id", "fingerprint"], unique=False
    )
    op.create_index(
        "ix_activations_heartbeat",
        "activations",
        ["deactivated_at", "last_heartbeat_at"],
        unique=False,
    )
    op.create_index(
        "ix_activations_license_live", "activations", ["license_id", "deactivated_at"], unique=False
    )
    op.create_table(
        "client_notes",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("client_id", sa.String(length=36), nullable=False),
        sa.Column("license_id", sa.String(length=36), nullable=True),
        sa.Column("author", sa.String(length=100), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_at", server_stub.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["client_id"],
            ["clients.id"],
            name=op.f("fk_client_notes_client_id_clients"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["license_id"],
            ["licenses.id"],
            name=op.f("fk_client_notes_license_id_licenses"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_client_notes")),
    )
    op.create_index(
        "ix_client_notes_client", "client_notes", ["client_id", "created_at"], unique=False
    )
    op.create_table(
        "license_versions",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("license_id", sa.String(length=36), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(length=16), nullable=False),
        sa.Column("terms", sa.JSON(), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.Column("requested_by", sa.String(length=100), nullable=False),
        sa.Column("requested_at", server_stub.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("approved_by", sa.String(length=100), nullable=True),
        sa.Column("approved_at", server_stub.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("rejected_by", sa.String(length=100), nullable=True),
        sa.Column("rejected_at", server_stub.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("file_text", sa.Text(), nullable=True),
        sa.Column("checksum", sa.String(length=64), nullable=True),
        sa.Column("kid", sa.String(length=64), nullable=True),
        sa.Column("signed_at", server_stub.models.UTCDateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "reason IN ('issue', 'renew', 'upgrade', 'change')",
            name=op.f("ck_license_versions_reason_known"),
        ),
        sa.CheckConstraint("version >= 1", name=op.f("ck_license_versions_version_positive")),
        sa.ForeignKeyConstraint(
            ["license_id"],
            ["licenses.id"],
            name=op.f("fk_license_versions_license_id_licenses"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_license_versions")),
        sa.UniqueConstraint("license_id", "version", name="uq_license_versions_license_version"),
    )
    op.create_index(
        "ix_license_versions_pending",
        "license_versions",
        ["approved_at", "rejected_at"],
        unique=False,
    )
    op.create_table(
        "module_usage",
        sa.Column("license_id", sa.String(length=36), nullable=False),
        sa.Column("module", sa.String(length=64), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("heartbeats", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["license_id"],
            ["licenses.id"],
            name=op.f("fk_module_usage_license_id_licenses"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("license_id", "module", "day", name=op.f("pk_module_usage")),
    )
    op.create_index("ix_module_usage_day", "module_usage", ["day", "module"], unique=False)


def downgrade() -> None:
    op.drop_table("module_usage")
    op.drop_table("license_versions")
    op.drop_table("client_notes")
    op.drop_table("activations")
    op.drop_table("activation_events")
    op.drop_table("payments")
    op.drop_table("licenses")
    op.drop_table("contracts")
    op.drop_table("product_modules")
    op.drop_table("clients")
    op.drop_table("products")
    op.drop_table("portal_settings")
    op.drop_table("notifications")
