"""Server settings: ``TGFLOW_*`` environment variables (or a ``.env`` file), validated once."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Annotated, Literal

import platformdirs
from pydantic import BeforeValidator, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from agent.protocol import (
    DEFAULT_LEASE_TTL_SECONDS,
    MARKETPLACE_GRACE_DAYS,
    MARKETPLACE_TRIAL_DAYS,
)

from .services.billing.dunning_schedule import DEFAULT_RETRY_DAYS, parse_retry_days


def default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir("TGFlow", appauthor=False)) / "server"


#: What a PKCS#11 signer needs; with ``license_signer=pkcs11`` each must be set.
#: The shortest shared secret accepted for the signed integration API (HMAC-SHA256's block
#: of entropy: 256 bits).
EXTERNAL_SECRET_MIN_BYTES = 32

_PKCS11_SETTINGS = ("pkcs11_module", "pkcs11_token_label", "pkcs11_key_label", "pkcs11_pin")


class Settings(BaseSettings):
    # Errors name the setting and the reason, never the value: several values are secrets
    # (a database URL's password, the integration API's shared secrets).
    model_config = SettingsConfigDict(
        env_prefix="TGFLOW_",
        env_file=None,
        extra="ignore",
        secrets_dir=None,
        hide_input_in_errors=True,
    )

    data_dir: Path = Field(default_factory=default_data_dir)
    #: SQLAlchemy URL. Empty: an SQLite file ``tgflow.db`` in the data dir.
    #: ``postgresql://`` URLs are driven by psycopg 3.
    database_url: SecretStr | None = None
    #: A file holding the database URL (for secret managers that mount files).
    database_url_file: Path | None = None
    redis_url: SecretStr | None = None
    #: Prefix of every Redis key this server writes (lets several deployments share one Redis).
    redis_key_prefix: str = "tgflow"
    public_url: str = "http://127.0.0.1:8000"
    issuer: str = "tgflow"
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    max_body_bytes: int = Field(default=64 * 1024, ge=1024)

    access_token_ttl_seconds: int = Field(default=15 * 60, ge=60, le=3600)
    lease_ttl_seconds: int = Field(default=DEFAULT_LEASE_TTL_SECONDS, ge=300)
    default_plan: str = "free"

    rate_limit_enabled: bool = True
    rate_limit_per_token: str = "20/second"
    rate_limit_per_ip: str = "100/minute"
    #: The points wallet's and the stores' endpoints, per IP even with a token (seed 001).
    rate_limit_wallet_per_ip: str = "100/minute"
    #: Trust ``X-Forwarded-For`` for the client address (only behind a trusted proxy).
    trust_forwarded_for: bool = False

    sweep_interval_seconds: float = Field(default=30.0, gt=0)
    #: How long a worker may answer "this session is live" from memory. Ended sessions are
    #: announced to every worker at once (PostgreSQL LISTEN/NOTIFY); this bounds the staleness
    #: should an announcement be lost. 0 asks the database on every request.
    session_cache_ttl_seconds: float = Field(default=1.0, ge=0, le=60)
    #: Telemetry events received more than this many days ago are deleted by the sweeper.
    telemetry_retention_days: int = Field(default=30, ge=1, le=3650)
    #: Marketplace: the length of an app's trial, and of the grace after a paid period lapses.
    marketplace_trial_days: int = Field(default=MARKETPLACE_TRIAL_DAYS, ge=1, le=365)
    marketplace_grace_days: int = Field(default=MARKETPLACE_GRACE_DAYS, ge=0, le=365)
    #: Billing: how many days past the paid period a ``past_due`` subscription keeps its plan
    #: while a renewal or dunning retry may still pay (docs/billing.md); then the license stops.
    billing_grace_days: int = Field(default=3, ge=0, le=60)
    #: Billing: where the provider's checkout sends the customer after paying or giving up.
    #: Unset: ``<public_url>/billing/checkout/success`` and ``.../cancel``.
    billing_success_url: str | None = None
    billing_cancel_url: str | None = None
    #: Audit log: the sweeper signs a checkpoint of the head when it moved and the last
    #: checkpoint is this old, or sooner when this many entries are not yet covered. Entries
    #: after the last checkpoint are the window in which a cut from the end goes unseen.
    audit_checkpoint_interval_seconds: int = Field(default=300, ge=1, le=7 * 24 * 3600)
    audit_checkpoint_entries: int = Field(default=100, ge=1)
    #: Staff: the AES-256 key of the TOTP secrets at rest, base64 of 32 bytes, for deployments
    #: whose machines share no data dir. Unset: ``<data dir>/keys/totp.key`` (made at first start).
    #: Checked by ``services/staff/totp_vault.py``: a malformed key refuses TOTP, never echoed.
    totp_key: SecretStr | None = None
    #: Staff: how long a staff login lasts (its refresh tokens rotate within it).
    staff_session_ttl_seconds: int = Field(default=12 * 3600, ge=300, le=7 * 24 * 3600)
    #: Who signs license files and other signed documents: the ``license`` key file (``file``)
    #: or a PKCS#11 token (``pkcs11``, which needs the four ``pkcs11_*`` settings below).
    license_signer: Literal["file", "pkcs11"] = "file"
    #: Path of the PKCS#11 module (``/usr/lib/softhsm/libsofthsm2.so``, a vendor's HSM library).
    pkcs11_module: Path | None = None
    pkcs11_token_label: str | None = None
    #: CKA_LABEL of the EC P-256 key pair (both halves carry it).
    pkcs11_key_label: str | None = None
    #: The token's user PIN (``TGFLOW_PKCS11_PIN``); never logged.
    pkcs11_pin: SecretStr | None = None
    #: Shared secrets of the signed integration API (``/external``), comma separated so a
    #: secret can rotate (every listed one is accepted); each at least 32 bytes. Unset: every
    #: ``/external`` request is refused (docs/licensing.md, "Integrations"). Never logged.
    external_hmac_secrets: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    # --- notifications (docs/licensing.md, "Notifications"): the secrets of each channel live
    # here; which channels are on and to whom is the Admin's ``notifications`` portal setting.
    notify_smtp_host: str | None = None
    notify_smtp_port: int = Field(default=587, ge=1, le=65535)
    #: Upgrade the SMTP connection with STARTTLS before logging in (off only for a local relay).
    notify_smtp_starttls: bool = True
    notify_smtp_username: str | None = None
    notify_smtp_password: SecretStr | None = None
    notify_smtp_from: str | None = None
    #: The webhook's URL (a Slack incoming-webhook URL is itself a secret).
    notify_webhook_url: SecretStr | None = None
    #: When set, each webhook body is signed: ``X-TGFlow-Signature: sha256=<HMAC-SHA256 hex>``.
    notify_webhook_secret: SecretStr | None = None
    notify_telegram_bot_token: SecretStr | None = None
    notify_telegram_api_base: str = "https://api.telegram.org"
    #: Seconds one delivery attempt may take (connect and answer) on any channel.
    notify_timeout_seconds: float = Field(default=10.0, gt=0, le=60)
    #: Failed attempts after which a notification is dead-lettered (an Admin may redrive it).
    notify_max_attempts: int = Field(default=8, ge=1, le=50)
    # --- billing providers (docs/billing.md, "Providers and their fakes"): a provider whose
    # credentials are unset is absent (no checkout, no charge through it), never half-configured.
    #: Stripe's secret API key (``sk_live_…``/``sk_test_…``). Unset: Stripe is not offered.
    #: Never logged.
    stripe_api_key: SecretStr | None = None
    #: Where the Stripe SDK sends its requests (the fake Stripe's URL in tests and the demo).
    stripe_api_base: str = "https://api.stripe.com"
    #: CloudPayments' Public ID: the user name of its API's HTTP Basic auth. Unset (or no API
    #: secret): CloudPayments is not offered.
    cloudpayments_public_id: str | None = None
    #: CloudPayments' API secret: the password of its API and the key of its notifications'
    #: ``Content-HMAC``. Unset: CloudPayments is not offered and every
    #: ``/webhooks/cloudpayments/…`` is refused (fail closed). Never logged.
    cloudpayments_api_secret: SecretStr | None = None
    #: Where CloudPayments' API is (the fake CloudPayments' URL in tests and the demo).
    cloudpayments_api_base: str = "https://api.cloudpayments.ru"
    #: Billing: the retries of a failed renewal, in days after the failure, comma separated
    #: (``TGFLOW_BILLING_RETRY_DAYS=1,3,5,7``): whole days 1..14, strictly increasing; empty
    #: for none. Hard declines are never retried (docs/billing.md, "Dunning schedule").
    billing_retry_days: Annotated[tuple[int, ...], NoDecode, BeforeValidator(parse_retry_days)] = (
        DEFAULT_RETRY_DAYS
    )
    #: Billing's reconciler (docs/billing.md, "Reconciler"): how often the sweeper asks each
    #: provider for its truth (what a lost webhook left behind), and how many days back it looks
    #: (undelivered events, and our open invoices younger than that).
    billing_reconcile_interval_seconds: int = Field(default=900, ge=60, le=7 * 24 * 3600)
    billing_reconcile_days: int = Field(default=3, ge=1, le=30)
    #: ``Idempotency-Key`` of money-moving POSTs (docs/billing.md, "Idempotency-Key"): how long
    #: the first response to a key is replayed (Stripe: 24 h); then the key is new again and the
    #: sweeper prunes it.
    idempotency_ttl_seconds: int = Field(default=24 * 3600, ge=60, le=30 * 24 * 3600)
    #: How long a key whose first request has not answered yet refuses a retry (409 in progress);
    #: after it, a request that crashed no longer blocks its key and a retry executes.
    idempotency_lease_seconds: int = Field(default=120, ge=5, le=3600)
    # --- billing webhooks (docs/billing.md, "Webhooks: one inbox"); every secret is never logged.
    #: Stripe's webhook signing secrets (``whsec_…``), comma separated so that one can rotate
    #: (every listed one is accepted). Unset: every ``/webhooks/stripe`` is refused (fail closed).
    stripe_webhook_secrets: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    #: Applied and ignored webhooks are deleted by the sweeper this many days after they arrived
    #: (the dedupe window: a provider's redelivery within it is recognised). At least 30.
    webhook_retention_days: int = Field(default=35, ge=30, le=3650)
    #: Failed attempts to apply a webhook after which it is dead-lettered (until a redrive).
    webhook_max_attempts: int = Field(default=8, ge=1, le=50)
    #: How long a claimed webhook is left to its worker before another may take it over (a
    #: worker that died mid-apply): well past the time one apply takes.
    webhook_lease_seconds: int = Field(default=300, ge=5, le=24 * 3600)
    #: How often an idle webhook worker looks for due events.
    webhook_poll_seconds: float = Field(default=1.0, gt=0, le=300)
    # --- store purchases (docs/points.md, "Store purchases (RuStore)"); secrets never logged.
    #: How long ``GET /products`` serves the catalogue from memory before reading it again (an
    #: operator's change shows within this time on every server process).
    products_cache_ttl_seconds: float = Field(default=60.0, ge=0, le=3600)
    #: RuStore's Public API (the fake RuStore's URL in tests and the demo).
    rustore_api_base: str = "https://public-api.rustore.ru"
    #: The ``Public-Token`` of RuStore's Public API. Unset: RuStore is absent, every verify
    #: through it is refused (fail closed).
    rustore_public_token: SecretStr | None = None
    #: The app's id in the RuStore console (the path of a consumable's confirmation).
    rustore_app_id: str = "0"
    #: The app's package name (``com.example.app``): subscriptions verified active are
    #: acknowledged under it. Unset: they are not acknowledged (RuStore does not require it).
    rustore_package_name: str | None = None
    #: How long a store subscription verified active is paid through before RuStore is asked
    #: again (its state call answers only ``is_active``, no date to trust): each verify, and the
    #: store reconciler within this window of its end, extends it while the store says active.
    store_subscription_recheck_hours: int = Field(default=48, ge=1, le=24 * 31)
    #: Check purchases on RuStore's sandbox paths (test payments) instead of the real ones.
    rustore_sandbox: bool = False
    #: The console's key for server notifications (Base64 of 32 bytes, AES-256-GCM). Unset:
    #: every ``/webhooks/rustore`` is refused 403 (fail closed).
    rustore_console_key: SecretStr | None = None
    run_migrations: bool = True
    log_level: str = "INFO"
    log_json: bool = True

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()]
        return value

    @field_validator("external_hmac_secrets", "stripe_webhook_secrets", mode="before")
    @classmethod
    def _split_secrets(cls, value: object) -> object:
        if isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()]
        return value

    @field_validator("rustore_console_key")
    @classmethod
    def _console_key_is_aes256(cls, value: SecretStr | None) -> SecretStr | None:
        # RuStore's console key is Base64 of 32 bytes (AES-256); anything else would refuse
        # every notification in silence.
        if value is None or not value.get_secret_value():
            return value
        try:
            key = base64.b64decode(value.get_secret_value(), validate=True)
        except ValueError:
            raise ValueError("must be Base64") from None
        if len(key) != 32:
            raise ValueError("must be Base64 of 32 bytes (an AES-256 key)")
        return value

    @field_validator("external_hmac_secrets")
    @classmethod
    def _secrets_long_enough(cls, value: list[SecretStr]) -> list[SecretStr]:
        for number, secret in enumerate(value, start=1):
            if len(secret.get_secret_value().encode("utf-8")) < EXTERNAL_SECRET_MIN_BYTES:
                # Which one, never what it is.
                raise ValueError(
                    f"TGFLOW_EXTERNAL_HMAC_SECRETS: secret #{number} is shorter than "
                    f"{EXTERNAL_SECRET_MIN_BYTES} bytes"
                )
        return value

    @model_validator(mode="after")
    def _pkcs11_complete(self) -> Settings:
        if self.license_signer == "pkcs11":
            missing = [
                f"TGFLOW_{name.upper()}"
                for name in (
                    "pkcs11_module",
                    "pkcs11_token_label",
                    "pkcs11_key_label",
                    "pkcs11_pin",
                )
                if not getattr(self, name)
            ]
            if missing:
                raise ValueError(
                    f"TGFLOW_LICENSE_SIGNER=pkcs11 needs {', '.join(missing)} to be set"
                )
        return self

    def resolved_database_url(self) -> str:
        """The SQLAlchemy URL: from the file, else the variable, else SQLite in the data dir."""
        if self.database_url_file is not None:
            url = self.database_url_file.read_text(encoding="utf-8").strip()
        elif self.database_url is not None and self.database_url.get_secret_value():
            url = self.database_url.get_secret_value()
        else:
            return f"sqlite:///{self.data_dir / 'tgflow.db'}"
        if url.startswith(("postgresql://", "postgres://")):
            url = "postgresql+psycopg://" + url.split("://", 1)[1]
        return url


def libpq_conninfo(sqlalchemy_url: str) -> str:
    """The libpq form of a PostgreSQL SQLAlchemy URL (for connections made with psycopg)."""
    from sqlalchemy.engine import make_url

    return make_url(sqlalchemy_url).set(drivername="postgresql").render_as_string(False)
