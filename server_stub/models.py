"""SQLAlchemy models: the whole schema of the reference backend, in one place."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores naive text)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTCDateTime column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def new_id() -> str:
    return str(uuid.uuid4())


#: A price column that 0001 made INTEGER and 0018 widened to 64 bits. On SQLite it stays declared
#: INTEGER (already 64 bits there; re-declaring would rebuild ``plans``, which foreign keys
#: point at), so the models and the migrated schema agree on every database.
WIDENED_MONEY = BigInteger().with_variant(Integer(), "sqlite")


def one_of(column: str, values: Iterable[str]) -> str:
    """The CHECK of a column that takes one of ``values`` (quoted, as SQL literals)."""
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Plan(Base):
    __tablename__ = "plans"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    monthly_quota: Mapped[int] = mapped_column(Integer)
    max_devices: Mapped[int] = mapped_column(Integer)
    features: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # Billing (docs/billing.md, "Plans, subscriptions and entitlement"): the price of one
    # ``interval``, in minor units of ``currency``; ``rank`` states the direction of a plan
    # change (higher: upgrade); a retired plan is no longer offered, its subscribers keep it.
    price_minor: Mapped[int] = mapped_column(WIDENED_MONEY, default=0, server_default="0")
    currency: Mapped[str] = mapped_column(String(3), default="RUB", server_default="RUB")
    interval: Mapped[str] = mapped_column(String(8), default="month", server_default="month")
    trial_days: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    rank: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # The points wallet (docs/points.md, "Buying messages with points"): how many extra
    # messages of the current period one point buys; 0: the plan sells none.
    topup_messages_per_point: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    __table_args__ = (
        CheckConstraint("monthly_quota >= 0", name="quota_nonnegative"),
        CheckConstraint("max_devices >= 1", name="devices_positive"),
        CheckConstraint("price_minor >= 0", name="price_nonnegative"),
        CheckConstraint("\"interval\" IN ('month', 'year')", name="interval_known"),
        CheckConstraint("trial_days >= 0", name="trial_nonnegative"),
    )


class User(Base):
    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class Subscription(Base):
    """A user's current plan: the entitlement the hot paths read. ``period_anchor`` fixes the
    day each monthly quota period starts. ``entitled_until``: the end of what billing's
    subscription pays for (with its grace), kept in step by billing's projector; ``None`` for a
    plan the operator assigned without billing (it lasts while ``status`` is active)."""

    __tablename__ = "subscriptions"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), unique=True)
    plan_id: Mapped[str] = mapped_column(ForeignKey("plans.id"))
    status: Mapped[str] = mapped_column(String(16), default="active")
    period_anchor: Mapped[datetime] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    entitled_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class UsagePeriod(Base):
    """Quota counters of one user for one period. The CHECK keeps the invariant in the database."""

    __tablename__ = "usage_periods"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    period_start: Mapped[datetime] = mapped_column(UTCDateTime())
    period_end: Mapped[datetime] = mapped_column(UTCDateTime())
    quota_limit: Mapped[int] = mapped_column(Integer)
    used: Mapped[int] = mapped_column(Integer, default=0)
    held: Mapped[int] = mapped_column(Integer, default=0)

    __table_args__ = (
        UniqueConstraint("user_id", "period_start", name="uq_usage_periods_user_start"),
        CheckConstraint("used >= 0", name="used_nonnegative"),
        CheckConstraint("held >= 0", name="held_nonnegative"),
        CheckConstraint("used + held <= quota_limit", name="within_limit"),
    )


class Reservation(Base):
    __tablename__ = "reservations"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    period_id: Mapped[str] = mapped_column(ForeignKey("usage_periods.id", ondelete="CASCADE"))
    correlation_id: Mapped[str] = mapped_column(String(128))
    messages: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    used: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    settled_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    #: ``remaining`` as answered when the reservation was made, and when it was settled, so that
    #: a replayed call returns exactly the same body.
    remaining_after_reserve: Mapped[int] = mapped_column(Integer)
    remaining_after_settle: Mapped[int | None] = mapped_column(Integer, nullable=True)

    __table_args__ = (
        Index("ix_reservations_status_expires", "status", "expires_at"),
        Index("ix_reservations_user", "user_id"),
        CheckConstraint("messages > 0", name="messages_positive"),
        CheckConstraint("used >= 0 AND used <= messages", name="used_within_messages"),
    )


class IdempotencyKey(Base):
    """``correlation_id`` → its outcome (a reservation or a refusal), for the idempotency window."""

    __tablename__ = "idempotency_keys"

    user_id: Mapped[str] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    #: Empty while the reserve that claimed the id runs, and for a refusal.
    reservation_id: Mapped[str | None] = mapped_column(
        ForeignKey("reservations.id", ondelete="CASCADE"), nullable=True
    )
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    #: The refusal's detail and ``remaining``, replayed as they were first answered.
    refused_detail: Mapped[str | None] = mapped_column(Text, nullable=True)
    refused_remaining: Mapped[int | None] = mapped_column(Integer, nullable=True)


class Device(Base):
    __tablename__ = "devices"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    fingerprint: Mapped[str] = mapped_column(String(256))
    name: Mapped[str | None] = mapped_column(String(100), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    __table_args__ = (Index("ix_devices_user_fingerprint", "user_id", "fingerprint"),)


class AuthSession(Base):
    """One login on one device: the family that every rotated refresh token belongs to."""

    __tablename__ = "auth_sessions"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    revoked_reason: Mapped[str | None] = mapped_column(String(32), nullable=True)


class RefreshToken(Base):
    __tablename__ = "refresh_tokens"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    session_id: Mapped[str] = mapped_column(ForeignKey("auth_sessions.id", ondelete="CASCADE"))
    #: SHA-256 of the token; the token itself is never stored.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    __table_args__ = (Index("ix_refresh_tokens_session", "session_id"),)


class TelemetryEvent(Base):
    """One anonymous desktop usage event (docs/server.md, "Telemetry").

    Deliberately without a user, device or client address: nothing here links an event to a
    person. ``event_id`` is the client's idempotency key; ``received_at`` drives retention.
    """

    __tablename__ = "telemetry_events"

    event_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime())
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
    app_version: Mapped[str] = mapped_column(String(32))
    install_id: Mapped[str] = mapped_column(String(32))
    properties: Mapped[dict[str, bool | int | float | str]] = mapped_column(JSON, default=dict)

    __table_args__ = (Index("ix_telemetry_events_received_at", "received_at"),)


# --- marketplace (docs/marketplace.md) ------------------------------------------------------------


class MarketplaceBackend(Base):
    """A tenant backend registered by the operator.

    ``admin_token_jti`` is the one Backend Admin Token that is valid now: issuing a new one
    replaces it, which ends the old token at once.
    """

    __tablename__ = "backends"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    admin_token_jti: Mapped[str | None] = mapped_column(String(64), nullable=True)
    admin_token_issued_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class BackendKey(Base):
    """A backend's public ES256 key. A replaced key stays published for 30 minutes.

    ``kid`` (the RFC 7638 thumbprint) is unique across backends: a key belongs to one backend.
    """

    __tablename__ = "backend_keys"

    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    backend_id: Mapped[str] = mapped_column(ForeignKey("backends.id", ondelete="CASCADE"))
    #: ``kty``, ``crv``, ``x``, ``y`` only.
    jwk: Mapped[dict[str, str]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    __table_args__ = (Index("ix_backend_keys_backend", "backend_id"),)


class MarketplaceApp(Base):
    """An app listed by the operator. Prices are integer minor units; ``None``: not offered."""

    __tablename__ = "apps"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(Text)
    developer: Mapped[str] = mapped_column(String(100))
    price_monthly: Mapped[int | None] = mapped_column(Integer, nullable=True)
    price_yearly: Mapped[int | None] = mapped_column(Integer, nullable=True)
    price_perpetual: Mapped[int | None] = mapped_column(Integer, nullable=True)
    currency: Mapped[str] = mapped_column(String(3))
    artifact_url: Mapped[str] = mapped_column(String(2048))
    artifact_sha256: Mapped[str] = mapped_column(String(64))
    artifact_size: Mapped[int] = mapped_column(BigInteger)
    iframe_url: Mapped[str] = mapped_column(String(2048))
    callback_url: Mapped[str] = mapped_column(String(2048))
    permissions: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (
        CheckConstraint(
            "(price_monthly IS NULL OR price_monthly >= 0)"
            " AND (price_yearly IS NULL OR price_yearly >= 0)"
            " AND (price_perpetual IS NULL OR price_perpetual >= 0)",
            name="prices_nonnegative",
        ),
        CheckConstraint("artifact_size >= 0", name="artifact_size_nonnegative"),
    )


class BackendLicense(Base):
    """One backend's license of one app: its plan and dates; the state follows from the clock.

    The state (``agent.protocol.MarketplaceLicenseStatus``) is computed from the dates, never
    read from ``status``: ``status`` is the state last written, kept so that each change of state
    is written to the audit table once. ``trial_ends_at`` is set once and never cleared: it is
    the record that the backend has had its trial of this app.
    """

    __tablename__ = "backend_licenses"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    backend_id: Mapped[str] = mapped_column(ForeignKey("backends.id", ondelete="CASCADE"))
    app_id: Mapped[str] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"))
    plan: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    #: Start of the trial or of the current paid period.
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    #: End of the trial or of the current paid period (``None``: perpetual or unpaid).
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    grace_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    trial_ends_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    #: The anchor of a monthly or yearly license's paid periods (0019): every period ends on
    #: ``anchor + n`` months or years, so a Jan 31 anchor ends periods on Feb 28/29, then Mar 31
    #: (services/marketplace/periods.py). ``None``: no paid periods (trial, pending, perpetual,
    #: free), or a license last paid before 0019 (its next renewal infers one).
    period_anchor: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    __table_args__ = (
        UniqueConstraint("backend_id", "app_id", name="uq_backend_licenses_backend_app"),
        Index("ix_backend_licenses_app", "app_id"),
        Index("ix_backend_licenses_status", "status"),
    )


class Installation(Base):
    __tablename__ = "installations"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    backend_id: Mapped[str] = mapped_column(ForeignKey("backends.id", ondelete="CASCADE"))
    app_id: Mapped[str] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"))
    installed_at: Mapped[datetime] = mapped_column(UTCDateTime())
    config: Mapped[dict[str, object]] = mapped_column(JSON, default=dict)

    __table_args__ = (
        UniqueConstraint("backend_id", "app_id", name="uq_installations_backend_app"),
        Index("ix_installations_app", "app_id"),
    )


class MarketplaceCallback(Base):
    """An install/uninstall event for an app's ``callback_url``: the transactional outbox.

    Written in the transaction that installs or uninstalls, delivered later by the sweeper.
    ``next_attempt_at`` is when the next attempt is due (while a sweeper holds the event it is
    the end of that lease); ``None`` once the event is delivered or has failed for good.
    ``attempts`` counts the attempts made and is the lease's token: a sweeper writes the result
    of its attempt only if no other sweeper has claimed the event since. ``seq`` orders the
    events of one backend and app (they are written under the backend's row lock); ``id`` is
    the event id the app sees. No foreign keys: the event outlives what it describes.
    """

    __tablename__ = "marketplace_outbox"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(36), unique=True, default=new_id)
    backend_id: Mapped[str] = mapped_column(String(36))
    app_id: Mapped[str] = mapped_column(String(64))
    #: ``installed`` or ``uninstalled``.
    kind: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    failed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    last_error: Mapped[str | None] = mapped_column(String(500), nullable=True)

    __table_args__ = (
        CheckConstraint("kind IN ('installed', 'uninstalled')", name="kind_known"),
        Index("ix_marketplace_outbox_due", "next_attempt_at"),
        Index("ix_marketplace_outbox_backend_app", "backend_id", "app_id", "seq"),
    )


# --- staff and the audit log (docs/licensing.md) --------------------------------------------------


class Staff(Base):
    """An operator of the backend (seed 003's portal user); never an end user.

    ``totp_secret_sealed`` is set by the enrolment and ``totp_enabled_at`` once a code confirmed
    it; ``totp_last_step`` is the TOTP time step of the last code accepted, so a code is never
    accepted twice.
    """

    __tablename__ = "staff"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    #: A plain secret written before migration 0008; the start-up step encrypts it into
    #: ``totp_secret_sealed`` and clears it (services/staff/totp_vault.py).
    totp_secret: Mapped[str | None] = mapped_column(String(64), nullable=True)
    #: The secret as an AES-256-GCM envelope bound to the staff id; never the plain secret.
    totp_secret_sealed: Mapped[str | None] = mapped_column(String(255), nullable=True)
    totp_enabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger, nullable=True)

    __table_args__ = (
        CheckConstraint(
            "role IN ('admin', 'sales', 'implementation', 'support', 'audit')", name="role_known"
        ),
    )


class StaffRecoveryCode(Base):
    """A single-use recovery code, stored as its SHA-256 (the codes are random, 80 bits)."""

    __tablename__ = "staff_recovery_codes"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    staff_id: Mapped[str] = mapped_column(ForeignKey("staff.id", ondelete="CASCADE"))
    code_hash: Mapped[str] = mapped_column(String(64))
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    __table_args__ = (Index("ix_staff_recovery_codes_staff", "staff_id"),)


class StaffSession(Base):
    """One staff login: the family of its rotated refresh tokens, with a fixed end."""

    __tablename__ = "staff_sessions"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    staff_id: Mapped[str] = mapped_column(ForeignKey("staff.id", ondelete="CASCADE"))
    #: How the login was proven (RFC 8176): ``pwd``, and ``otp`` after a TOTP or recovery code.
    amr: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    revoked_reason: Mapped[str | None] = mapped_column(String(32), nullable=True)

    __table_args__ = (Index("ix_staff_sessions_staff", "staff_id"),)


class StaffRefreshToken(Base):
    __tablename__ = "staff_refresh_tokens"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    session_id: Mapped[str] = mapped_column(ForeignKey("staff_sessions.id", ondelete="CASCADE"))
    #: SHA-256 of the token; the token itself is never stored.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    __table_args__ = (Index("ix_staff_refresh_tokens_session", "session_id"),)


class AuditEntry(Base):
    """One entry of the backend's one audit log: append-only and hash-chained.

    ``hash`` is the SHA-256 of the entry's canonical form (``agent.protocol.audit_canonical``),
    which includes ``prev_hash``, the previous entry's ``hash``. ``seq`` is given by the writer,
    one more than the head, under the log's lock: no gaps. No foreign keys: the log outlives
    what it describes. ``object`` is a path (``staff/<id>``, ``marketplace/backend/<id>/app/<id>``).
    """

    __tablename__ = "audit_log"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    actor: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(64))
    object: Mapped[str] = mapped_column(String(300))
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))

    __table_args__ = (
        Index("ix_audit_log_at", "at"),
        Index("ix_audit_log_actor", "actor", "seq"),
        Index("ix_audit_log_object", "object", "seq"),
    )


class AuditCheckpoint(Base):
    """A signed statement of the log's head: ``hash`` of the entry ``seq`` (ES256 JWS)."""

    __tablename__ = "audit_checkpoints"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    hash: Mapped[str] = mapped_column(String(64))
    signed_at: Mapped[datetime] = mapped_column(UTCDateTime())
    jws: Mapped[str] = mapped_column(Text)


# The other capabilities' tables live in their own modules (the license portal, billing, the
# webhook inbox, the Idempotency-Key store); importing them here puts them on ``Base.metadata``,
# so every user of this module sees the whole schema.
from . import billing_models as billing_models  # noqa: E402
from . import idempotency_models as idempotency_models  # noqa: E402
from . import points_models as points_models  # noqa: E402
from . import portal_models as portal_models  # noqa: E402
from . import store_models as store_models  # noqa: E402
from . import webhook_models as webhook_models  # noqa: E402
