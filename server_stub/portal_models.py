"""The license portal's schema (seed 003, docs/licensing.md): clients, contracts, payments,
products and modules, licenses with their signed versions, activations, the notification outbox.

Kept apart from :mod:`server_stub.models` (which imports this module at its end, so
``Base.metadata`` always holds the whole schema) only to keep each file one size a reader can
hold. Money is integer minor units with an ISO currency (DESIGN.md, "Money").
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from .models import Base, UTCDateTime, new_id, one_of

#: The values a few portal columns may hold; the CHECKs below and the services use these.
CLIENT_STATUSES = ("prospect", "active", "archived")
DEPLOYMENTS = ("on_prem", "saas")
CONTRACT_STATUSES = ("draft", "signed", "paid", "closed")
LICENSE_PLANS = ("basic", "advanced", "enterprise")
#: ``pending_approval``: issued by someone whose issue needs an Admin's approval (four eyes);
#: ``active``; ``suspended`` (reversible); ``revoked`` (final). Expiry is a matter of dates.
LICENSE_STATUSES = ("pending_approval", "active", "suspended", "revoked")
#: Why a license version exists.
VERSION_REASONS = ("issue", "renew", "upgrade", "change")
ACTIVATION_EVENTS = ("activate", "checkout", "replace", "refused")
NOTIFICATION_CHANNELS = ("smtp", "webhook", "telegram")


class Client(Base):
    """A customer (legal entity). ``inn`` is unique and valid by its check digits (10 or 12)."""

    __tablename__ = "clients"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    legal_name: Mapped[str] = mapped_column(String(300))
    #: ``legal_name`` folded for search (migration 0008; SQLite's ``lower()`` is ASCII-only).
    search_name: Mapped[str] = mapped_column(String(300), default="", server_default="")
    inn: Mapped[str] = mapped_column(String(12), unique=True)
    segment: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="active")
    deployment: Mapped[str] = mapped_column(String(16))
    manager_id: Mapped[str | None] = mapped_column(
        ForeignKey("staff.id", ondelete="SET NULL"), nullable=True
    )
    #: ``[{name, email, phone, position}]``.
    contacts: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (
        CheckConstraint(one_of("status", CLIENT_STATUSES), name="status_known"),
        CheckConstraint(one_of("deployment", DEPLOYMENTS), name="deployment_known"),
        # Cursor pagination orders by (created_at, id); the filters narrow first.
        Index("ix_clients_created", "created_at", "id"),
        Index("ix_clients_segment", "segment", "created_at"),
        Index("ix_clients_manager", "manager_id", "created_at"),
        Index("ix_clients_status", "status", "created_at"),
    )


class Contract(Base):
    """A contract with a client; ``paid_at`` is set by a payment (``/external/payments``)."""

    __tablename__ = "contracts"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    client_id: Mapped[str] = mapped_column(ForeignKey("clients.id", ondelete="RESTRICT"))
    number: Mapped[str] = mapped_column(String(64), unique=True)
    signed_on: Mapped[date] = mapped_column(Date)
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    sla: Mapped[str | None] = mapped_column(String(200), nullable=True)
    #: ``[{title, url}]``: links to the documents (contract, act, specification) in the cloud.
    documents: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    status: Mapped[str] = mapped_column(String(16), default="signed")
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (
        CheckConstraint("amount_minor >= 0", name="amount_nonnegative"),
        CheckConstraint(one_of("status", CONTRACT_STATUSES), name="status_known"),
        Index("ix_contracts_client", "client_id", "signed_on"),
    )


class Payment(Base):
    """A payment reported by billing/CRM; ``(source, external_id)`` makes a report idempotent."""

    __tablename__ = "payments"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    contract_id: Mapped[str] = mapped_column(ForeignKey("contracts.id", ondelete="RESTRICT"))
    source: Mapped[str] = mapped_column(String(64))
    external_id: Mapped[str] = mapped_column(String(128))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    paid_at: Mapped[datetime] = mapped_column(UTCDateTime())
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
    #: The request body as received (for the audit and a redo), canonical JSON.
    raw: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    __table_args__ = (
        UniqueConstraint("source", "external_id", name="uq_payments_source_external"),
        CheckConstraint("amount_minor >= 0", name="amount_nonnegative"),
        Index("ix_payments_contract", "contract_id", "paid_at"),
    )


class Product(Base):
    """A product licensed through the portal (``tgflow``); ``id`` is the file's ``product``."""

    __tablename__ = "products"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ProductModule(Base):
    """A module of a product (AI Forecast, Multi-Department, …); ``code`` goes into files.

    ``list_price_minor`` (per year, optional) is the plan side of the "sales by module" report.
    """

    __tablename__ = "product_modules"

    product_id: Mapped[str] = mapped_column(
        ForeignKey("products.id", ondelete="CASCADE"), primary_key=True
    )
    code: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    list_price_minor: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    currency: Mapped[str | None] = mapped_column(String(3), nullable=True)
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class License(Base):
    """A license: the current terms. Each signed file is a :class:`LicenseVersion`.

    ``version`` is the newest version that took effect (0 while the first awaits approval);
    the terms columns always describe that version, a pending change lives in its version row
    until approved. Activation limits are built in (docs/licensing.md, "Limits"): ``None`` in a
    limit column means no limit.
    """

    __tablename__ = "licenses"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    license_key: Mapped[str] = mapped_column(String(128), unique=True)
    client_id: Mapped[str] = mapped_column(ForeignKey("clients.id", ondelete="RESTRICT"))
    contract_id: Mapped[str | None] = mapped_column(
        ForeignKey("contracts.id", ondelete="SET NULL"), nullable=True
    )
    product_id: Mapped[str] = mapped_column(ForeignKey("products.id", ondelete="RESTRICT"))
    plan: Mapped[str] = mapped_column(String(16))
    modules: Mapped[list[str]] = mapped_column(JSON, default=list)
    #: ``LicenseLimits`` as JSON: users, departments, integrations, api_rate, messages.
    limits: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    valid_from: Mapped[datetime] = mapped_column(UTCDateTime())
    valid_until: Mapped[datetime] = mapped_column(UTCDateTime())
    grace_days: Mapped[int] = mapped_column(Integer, default=0)
    domain: Mapped[str] = mapped_column(String(253))
    min_version: Mapped[str] = mapped_column(String(32))
    max_version: Mapped[str | None] = mapped_column(String(32), nullable=True)
    #: Installations below this version must update (told at activation and heartbeat).
    mandatory_min_version: Mapped[str | None] = mapped_column(String(32), nullable=True)
    encrypted: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(20))
    version: Mapped[int] = mapped_column(Integer, default=0)
    # --- built-in activation limits ---
    max_activations: Mapped[int | None] = mapped_column(Integer, nullable=True)
    activations_per_hour: Mapped[int | None] = mapped_column(Integer, nullable=True)
    checkouts_per_hour: Mapped[int | None] = mapped_column(Integer, nullable=True)
    #: CIDR ranges activations and heartbeats may come from; empty = anywhere.
    ip_ranges: Mapped[list[str]] = mapped_column(JSON, default=list)
    #: An activation with no heartbeat for this long is dead and frees its slot.
    heartbeat_window_s: Mapped[int] = mapped_column(Integer, default=600)
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    suspended_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    status_reason: Mapped[str | None] = mapped_column(String(500), nullable=True)

    __table_args__ = (
        CheckConstraint(one_of("plan", LICENSE_PLANS), name="plan_known"),
        CheckConstraint(one_of("status", LICENSE_STATUSES), name="status_known"),
        CheckConstraint("version >= 0", name="version_nonnegative"),
        CheckConstraint("grace_days >= 0", name="grace_nonnegative"),
        CheckConstraint("heartbeat_window_s >= 60", name="window_minimum"),
        Index("ix_licenses_client", "client_id", "created_at"),
        Index("ix_licenses_status_until", "status", "valid_until"),
        Index("ix_licenses_created", "created_at", "id"),
    )


class LicenseVersion(Base):
    """One version of a license: the terms as signed, the armoured file and its SHA-256.

    A version is written when staff issue, renew, upgrade or change a license. Under the four-eyes
    rule it waits (``approved_at`` None, ``file_text`` None) until an Admin other than the requester
    approves; it is signed then. ``rejected_at`` closes a request that was turned down. The history
    is never rewritten: a newer version supersedes, the revocation list names superseded versions.
    """

    __tablename__ = "license_versions"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    license_id: Mapped[str] = mapped_column(ForeignKey("licenses.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(String(16))
    #: The complete terms of this version (the columns of :class:`License` as JSON).
    terms: Mapped[dict[str, Any]] = mapped_column(JSON)
    #: Amount of the renewal/upgrade (for the four-eyes threshold and the sales report).
    amount_minor: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    currency: Mapped[str | None] = mapped_column(String(3), nullable=True)
    requested_by: Mapped[str] = mapped_column(String(100))
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime())
    approved_by: Mapped[str | None] = mapped_column(String(100), nullable=True)
    approved_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    rejected_by: Mapped[str | None] = mapped_column(String(100), nullable=True)
    rejected_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    file_text: Mapped[str | None] = mapped_column(Text, nullable=True)
    #: SHA-256 (hex) of ``file_text``'s UTF-8 bytes.
    checksum: Mapped[str | None] = mapped_column(String(64), nullable=True)
    kid: Mapped[str | None] = mapped_column(String(64), nullable=True)
    signed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    #: The requester's note: the invoice, a link to it (migration 0008).
    note: Mapped[str | None] = mapped_column(String(500), nullable=True)
    #: Why the approver turned the request down.
    rejection_reason: Mapped[str | None] = mapped_column(String(500), nullable=True)

    __table_args__ = (
        UniqueConstraint("license_id", "version", name="uq_license_versions_license_version"),
        CheckConstraint(one_of("reason", VERSION_REASONS), name="reason_known"),
        CheckConstraint("version >= 1", name="version_positive"),
        Index("ix_license_versions_pending", "approved_at", "rejected_at"),
    )


class Activation(Base):
    """An installation of a license on one machine (seed 003, 3.3).

    ``fingerprint`` is the machine's fingerprint hash as the agent sends it. An activation is live
    while ``deactivated_at`` is None; one with no heartbeat within the license's window is freed
    (``deactivated_reason`` ``dead``). ``modules``/``product_version``/``errors`` are the latest
    heartbeat's.
    """

    __tablename__ = "activations"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    license_id: Mapped[str] = mapped_column(ForeignKey("licenses.id", ondelete="CASCADE"))
    fingerprint: Mapped[str] = mapped_column(String(256))
    server_id: Mapped[str] = mapped_column(String(200))
    ip: Mapped[str] = mapped_column(String(45))
    product_version: Mapped[str] = mapped_column(String(32))
    modules: Mapped[list[str]] = mapped_column(JSON, default=list)
    file_version: Mapped[int] = mapped_column(Integer)
    activated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_heartbeat_at: Mapped[datetime] = mapped_column(UTCDateTime())
    heartbeats: Mapped[int] = mapped_column(BigInteger, default=0)
    errors: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    deactivated_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    #: ``replaced``, ``dead``, ``manual``, ``revoked``.
    deactivated_reason: Mapped[str | None] = mapped_column(String(16), nullable=True)

    __table_args__ = (
        Index("ix_activations_license_live", "license_id", "deactivated_at"),
        Index("ix_activations_fingerprint", "license_id", "fingerprint"),
        Index("ix_activations_heartbeat", "deactivated_at", "last_heartbeat_at"),
    )


class ActivationEvent(Base):
    """One activation-side request of a license, for the per-hour limits and the audit of use.

    ``kind``: ``activate`` (a new machine), ``checkout`` (a file download by an installation),
    ``replace`` (a machine replaced in one call), ``refused`` (a limit or check said no).
    """

    __tablename__ = "activation_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    license_id: Mapped[str] = mapped_column(ForeignKey("licenses.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    ip: Mapped[str] = mapped_column(String(45))
    detail: Mapped[str | None] = mapped_column(String(200), nullable=True)

    __table_args__ = (
        CheckConstraint(one_of("kind", ACTIVATION_EVENTS), name="kind_known"),
        Index("ix_activation_events_license_kind_at", "license_id", "kind", "at"),
    )


class ModuleUsage(Base):
    """Heartbeats per license, module and UTC day: the "module usage" report's source."""

    __tablename__ = "module_usage"

    license_id: Mapped[str] = mapped_column(
        ForeignKey("licenses.id", ondelete="CASCADE"), primary_key=True
    )
    module: Mapped[str] = mapped_column(String(64), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    heartbeats: Mapped[int] = mapped_column(BigInteger, default=0)

    __table_args__ = (Index("ix_module_usage_day", "day", "module"),)


class ClientNote(Base):
    """A note or ticket on a client (Support's "notes"), optionally about one license."""

    __tablename__ = "client_notes"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    client_id: Mapped[str] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"))
    license_id: Mapped[str | None] = mapped_column(
        ForeignKey("licenses.id", ondelete="SET NULL"), nullable=True
    )
    author: Mapped[str] = mapped_column(String(100))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (Index("ix_client_notes_client", "client_id", "created_at"),)


class PortalSetting(Base):
    """An Admin-managed setting of the portal (four-eyes rule, notification targets, …)."""

    __tablename__ = "portal_settings"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[Any] = mapped_column(JSON)
    updated_by: Mapped[str] = mapped_column(String(100))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Notification(Base):
    """A notification to send: the transactional outbox (delivered by the sweeper).

    ``dedupe_key`` makes the same event on the same channel one row however often the scan
    that finds it runs (``expiring_7:<license>:<valid_until>:smtp``). ``attempts`` is the lease
    token as in ``marketplace_outbox``.
    """

    __tablename__ = "notifications"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    dedupe_key: Mapped[str] = mapped_column(String(200), unique=True)
    #: ``expiring_30``, ``expiring_7``, ``expiring_1``, ``expired``, ``limit_exceeded``,
    #: ``revoked``.
    kind: Mapped[str] = mapped_column(String(32))
    channel: Mapped[str] = mapped_column(String(16))
    license_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    failed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    last_error: Mapped[str | None] = mapped_column(String(500), nullable=True)

    __table_args__ = (
        CheckConstraint(one_of("channel", NOTIFICATION_CHANNELS), name="channel_known"),
        Index("ix_notifications_due", "next_attempt_at"),
        Index("ix_notifications_license", "license_id", "seq"),
    )
