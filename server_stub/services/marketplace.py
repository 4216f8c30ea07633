"""The app marketplace (docs/marketplace.md): backends and their keys, apps, licenses,
installations, entitlement snapshots and the audit trail.

A license's state is never stored as the truth: it is computed from its dates and the injected
clock on every read (:func:`license_state`), so a trial ends, a paid period lapses into grace and
grace into ``disabled`` at the exact second, with or without a sweeper. The ``status`` column
keeps the state last written; whenever it differs from the computed one, the change is written
(with an audit row whose actor is ``clock``) by the next request that touches the license, or by
the periodic sweeper, whichever comes first.

Every write on a backend's licenses, installations, keys or admin token happens under that
backend's row lock (``SELECT … FOR UPDATE`` on PostgreSQL; SQLite's ``BEGIN IMMEDIATE`` serialises
writers anyway), so concurrent requests of one backend and the operator's CLI never interleave.
"""

from __future__ import annotations

import hmac
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from dateutil.relativedelta import relativedelta
from sqlalchemy import and_, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from agent.protocol import (
    APP_ACCESS_ALG,
    APP_ACCESS_TOKEN_TTL_SECONDS,
    APP_ID_PATTERN,
    APP_PERMISSION_PATTERN,
    INSTALLABLE_LICENSE_STATUSES,
    PAID_PLANS,
    USABLE_LICENSE_STATUSES,
    MarketplaceLicenseStatus,
    MarketplacePlan,
    jwk_thumbprint,
)

from ..db import transaction
from ..errors import (
    AlreadyExists,
    IdempotencyConflict,
    LicenseInactive,
    NotFound,
    TokenInvalid,
    ValidationFailed,
)
from ..marketplace_tokens import (
    BackendTokenKind,
    IssuedBackendToken,
    MarketplaceTokens,
)
from ..models import (
    BackendKey,
    BackendLicense,
    Installation,
    MarketplaceApp,
    MarketplaceAudit,
    MarketplaceBackend,
)
from .callbacks import CallbackKind, enqueue_callback
from .context import ServiceContext

log = logging.getLogger("tgflow.server.marketplace")

Status = MarketplaceLicenseStatus
Plan = MarketplacePlan

#: Audit actors besides ``backend:<id>``.
OPERATOR = "operator"
CLOCK = "clock"

_PERIOD = {Plan.MONTHLY: relativedelta(months=1), Plan.YEARLY: relativedelta(years=1)}
#: A replaced backend key stays published as long as a token it signed may live.
_KEY_PUBLISHED_AFTER_REPLACEMENT = timedelta(seconds=APP_ACCESS_TOKEN_TTL_SECONDS)
_MAX_PRICE = 2**31 - 1
_MAX_ARTIFACT_SIZE = 2**63 - 1
_LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def backend_actor(backend_id: str) -> str:
    return f"backend:{backend_id}"


def license_state(lic: BackendLicense, now: datetime) -> MarketplaceLicenseStatus:
    """The state of a license at ``now``, from its plan and dates alone (never its ``status``)."""
    if lic.revoked_at is not None:
        return Status.REVOKED
    trial_runs = lic.trial_ends_at is not None and now < lic.trial_ends_at
    if lic.plan == Plan.TRIAL:
        return Status.TRIAL if trial_runs else Status.EXPIRED
    if lic.paid_at is None:
        # A paid plan ordered during the trial does not cut the trial short.
        return Status.TRIAL if trial_runs else Status.PENDING
    if lic.expires_at is None or now < lic.expires_at:
        return Status.ACTIVE
    if lic.grace_until is not None and now < lic.grace_until:
        return Status.GRACE
    return Status.DISABLED


@dataclass(frozen=True)
class LicenseView:
    app_id: str
    plan: MarketplacePlan
    status: MarketplaceLicenseStatus
    started_at: datetime | None
    expires_at: datetime | None
    grace_until: datetime | None
    trial_ends_at: datetime | None

    @property
    def usable(self) -> bool:
        return self.status in USABLE_LICENSE_STATUSES


def _view(lic: BackendLicense, now: datetime) -> LicenseView:
    return LicenseView(
        app_id=lic.app_id,
        plan=Plan(lic.plan),
        status=license_state(lic, now),
        started_at=lic.started_at,
        expires_at=lic.expires_at,
        grace_until=lic.grace_until,
        trial_ends_at=lic.trial_ends_at,
    )


@dataclass(frozen=True)
class AppSpec:
    """An app as the operator lists it (``tgflow-server marketplace app create``)."""

    id: str
    name: str
    developer: str
    currency: str
    artifact_url: str
    artifact_sha256: str
    artifact_size: int
    iframe_url: str
    callback_url: str
    prices: Mapping[MarketplacePlan, int] = field(default_factory=dict)
    description: str = ""
    permissions: tuple[str, ...] = ()


@dataclass(frozen=True)
class BackendPrincipal:
    """The backend behind a verified Backend Admin or User Token."""

    backend_id: str
    jti: str


@dataclass(frozen=True)
class NewBackend:
    backend: MarketplaceBackend
    kid: str
    admin_token: IssuedBackendToken


@dataclass(frozen=True)
class PublishedKeys:
    backend_id: str
    current_kid: str
    keys: list[dict[str, str]]


@dataclass(frozen=True)
class CatalogEntry:
    app: MarketplaceApp
    license: LicenseView | None
    installation: Installation | None


@dataclass(frozen=True)
class InstalledEntry:
    app: MarketplaceApp
    installation: Installation
    license: LicenseView


@dataclass(frozen=True)
class LicenseChange:
    license: LicenseView
    #: False when the request asked for what the license already was (an idempotent repeat).
    changed: bool


@dataclass(frozen=True)
class InstallResult:
    installation: Installation
    app: MarketplaceApp
    created: bool


# --- audit records ------------------------------------------------------------------------------


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _license_record(lic: BackendLicense) -> dict[str, object]:
    return {
        "plan": lic.plan,
        "status": lic.status,
        "started_at": _iso(lic.started_at),
        "expires_at": _iso(lic.expires_at),
        "grace_until": _iso(lic.grace_until),
        "trial_ends_at": _iso(lic.trial_ends_at),
        "paid_at": _iso(lic.paid_at),
        "revoked_at": _iso(lic.revoked_at),
    }


def _installation_record(inst: Installation) -> dict[str, object]:
    return {"installed_at": _iso(inst.installed_at), "config": dict(inst.config)}


def _app_record(app: MarketplaceApp) -> dict[str, object]:
    return {
        "name": app.name,
        "developer": app.developer,
        "prices": {
            "currency": app.currency,
            "monthly": app.price_monthly,
            "yearly": app.price_yearly,
            "perpetual": app.price_perpetual,
        },
        "artifact": {
            "url": app.artifact_url,
            "sha256": app.artifact_sha256,
            "size": app.artifact_size,
        },
        "iframe_url": app.iframe_url,
        "callback_url": app.callback_url,
        "permissions": list(app.permissions),
    }


def _apply_spec(app: MarketplaceApp, spec: AppSpec) -> None:
    app.name = spec.name.strip()
    app.description = spec.description.strip()
    app.developer = spec.developer.strip()
    app.price_monthly = spec.prices.get(Plan.MONTHLY)
    app.price_yearly = spec.prices.get(Plan.YEARLY)
    app.price_perpetual = spec.prices.get(Plan.PERPETUAL)
    app.currency = spec.currency
    app.artifact_url = spec.artifact_url
    app.artifact_sha256 = spec.artifact_sha256
    app.artifact_size = spec.artifact_size
    app.iframe_url = spec.iframe_url
    app.callback_url = spec.callback_url
    app.permissions = sorted(set(spec.permissions))


def _audit(
    session: Session,
    now: datetime,
    actor: str,
    action: str,
    *,
    backend_id: str | None = None,
    app_id: str | None = None,
    before: dict[str, object] | None = None,
    after: dict[str, object] | None = None,
) -> None:
    session.add(
        MarketplaceAudit(
            at=now,
            actor=actor,
            action=action,
            backend_id=backend_id,
            app_id=app_id,
            before=before,
            after=after,
        )
    )


# --- validation of operator input ---------------------------------------------------------------


def _text_problem(
    label: str, value: str, max_length: int, *, required: bool = True, multiline: bool = False
) -> str | None:
    if required and not value.strip():
        return f"{label} must not be empty"
    if len(value) > max_length:
        return f"{label} must be at most {max_length} characters"
    if _CONTROL.search(value.replace("\n", "") if multiline else value):
        return f"{label} must not contain control characters"
    return None


def _url_problem(label: str, url: str) -> str | None:
    if len(url) > 2048 or _CONTROL.search(url) or " " in url:
        return f"{label} must be a URL of at most 2048 characters without spaces"
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        return f"{label} is not a valid URL"
    if not host:
        return f"{label} must be an absolute http(s) URL"
    if parts.scheme == "https" or (parts.scheme == "http" and host in _LOCAL_HOSTS):
        return None
    return f"{label} must be https:// (http:// only for localhost)"


def _spec_problems(spec: AppSpec) -> list[str]:
    problems = [
        p
        for p in (
            _text_problem("the name", spec.name, 100),
            _text_problem("the developer", spec.developer, 100),
            _text_problem(
                "the description", spec.description, 4000, required=False, multiline=True
            ),
            _url_problem("the artifact URL", spec.artifact_url),
            _url_problem("the iframe URL", spec.iframe_url),
            _url_problem("the callback URL", spec.callback_url),
        )
        if p
    ]
    if not re.fullmatch(APP_ID_PATTERN, spec.id):
        problems.append(
            "the app id must be 1-64 lower-case letters, digits and inner hyphens "
            "(it is the audience of the app's tokens)"
        )
    if not re.fullmatch(r"[A-Z]{3}", spec.currency):
        problems.append("the currency must be an ISO 4217 code such as USD")
    if not re.fullmatch(r"[0-9a-f]{64}", spec.artifact_sha256):
        problems.append("the artifact SHA-256 must be 64 lower-case hex digits")
    if not 1 <= spec.artifact_size <= _MAX_ARTIFACT_SIZE:
        problems.append("the artifact size must be a positive number of bytes")
    if not spec.prices:
        problems.append("an app needs a price for at least one of monthly, yearly, perpetual")
    for plan, price in spec.prices.items():
        if plan not in PAID_PLANS:
            problems.append(f"the {plan} plan has no price (only {', '.join(PAID_PLANS)} do)")
        elif not 0 <= price <= _MAX_PRICE:
            problems.append(f"the {plan} price must be between 0 and {_MAX_PRICE} minor units")
    for permission in spec.permissions:
        if not re.fullmatch(APP_PERMISSION_PATTERN, permission):
            problems.append(
                f"the permission {permission!r} must be lower-case letters, digits and _ . : -"
                " starting with a letter (at most 64)"
            )
    return problems


class MarketplaceService:
    def __init__(self, ctx: ServiceContext, tokens: MarketplaceTokens) -> None:
        self._ctx = ctx
        self._tokens = tokens

    @property
    def _trial(self) -> timedelta:
        return timedelta(days=self._ctx.settings.marketplace_trial_days)

    @property
    def _grace(self) -> timedelta:
        return timedelta(days=self._ctx.settings.marketplace_grace_days)

    # --- backends and their tokens (operator) ---------------------------------------------------

    def create_backend(self, name: str, jwk: Mapping[str, str]) -> NewBackend:
        """Register a backend with its public key; returns it with its Backend Admin Token."""
        name = name.strip()
        problem = _text_problem("the backend name", name, 100)
        if problem:
            raise ValidationFailed(problem)
        key = {k: jwk[k] for k in ("kty", "crv", "x", "y")}
        kid = jwk_thumbprint(key)
        now = self._ctx.clock.now()
        try:
            with transaction(self._ctx.write) as session:
                if session.get(BackendKey, kid) is not None:
                    raise AlreadyExists("this key is registered to another backend already")
                backend = MarketplaceBackend(name=name, created_at=now)
                session.add(backend)
                session.flush()
                session.add(BackendKey(kid=kid, backend_id=backend.id, jwk=key, created_at=now))
                issued = self._issue_admin_token(session, backend, now)
                _audit(
                    session,
                    now,
                    OPERATOR,
                    "backend.create",
                    backend_id=backend.id,
                    after={"name": name, "kid": kid, "admin_token_jti": issued.jti},
                )
        except IntegrityError as exc:  # a concurrent registration of the same key won
            raise AlreadyExists("this key is registered to another backend already") from exc
        log.info("marketplace backend created", extra={"backend_id": backend.id})
        return NewBackend(backend=backend, kid=kid, admin_token=issued)

    def reissue_admin_token(self, backend_id: str) -> IssuedBackendToken:
        """A new Backend Admin Token; the backend's previous one stops working at once."""
        now = self._ctx.clock.now()
        with transaction(self._ctx.write) as session:
            backend = self._lock_backend(session, backend_id)
            before: dict[str, object] = {"admin_token_jti": backend.admin_token_jti}
            issued = self._issue_admin_token(session, backend, now)
            _audit(
                session,
                now,
                OPERATOR,
                "backend.admin_token",
                backend_id=backend_id,
                before=before,
                after={"admin_token_jti": issued.jti},
            )
        return issued

    def _issue_admin_token(
        self, session: Session, backend: MarketplaceBackend, now: datetime
    ) -> IssuedBackendToken:
        issued = self._tokens.issue(BackendTokenKind.ADMIN, backend.id, now=now)
        backend.admin_token_jti = issued.jti
        backend.admin_token_issued_at = now
        return issued

    def authenticate_admin(self, token: str) -> BackendPrincipal:
        """The backend behind a Backend Admin Token that is still its current one."""
        claims = self._tokens.verify(token, BackendTokenKind.ADMIN, now=self._ctx.clock.now())
        with transaction(self._ctx.read) as session:
            current = session.scalar(
                select(MarketplaceBackend.admin_token_jti).where(
                    MarketplaceBackend.id == claims.backend_id
                )
            )
        if current is None or not hmac.compare_digest(current, claims.jti):
            raise TokenInvalid("this Backend Admin Token has been replaced or its backend is gone")
        return BackendPrincipal(backend_id=claims.backend_id, jti=claims.jti)

    def authenticate_user(self, token: str) -> BackendPrincipal:
        """The backend behind a Backend User Token."""
        claims = self._tokens.verify(token, BackendTokenKind.USER, now=self._ctx.clock.now())
        with transaction(self._ctx.read) as session:
            known = session.get(MarketplaceBackend, claims.backend_id) is not None
        if not known:
            raise TokenInvalid("the backend of this Backend User Token is gone")
        return BackendPrincipal(backend_id=claims.backend_id, jti=claims.jti)

    def issue_user_token(self, backend_id: str) -> IssuedBackendToken:
        return self._tokens.issue(BackendTokenKind.USER, backend_id, now=self._ctx.clock.now())

    # --- backend keys ---------------------------------------------------------------------------

    def register_key(self, backend_id: str, jwk: Mapping[str, str]) -> PublishedKeys:
        """Make ``jwk`` the backend's current key; the one it replaces stays published 30 min."""
        key = {k: jwk[k] for k in ("kty", "crv", "x", "y")}
        kid = jwk_thumbprint(key)
        now = self._ctx.clock.now()
        try:
            with transaction(self._ctx.write) as session:
                self._lock_backend(session, backend_id)
                known = session.get(BackendKey, kid)
                if known is not None and known.backend_id != backend_id:
                    raise AlreadyExists("this key is registered to another backend")
                current = session.scalar(
                    select(BackendKey).where(
                        BackendKey.backend_id == backend_id, BackendKey.retired_at.is_(None)
                    )
                )
                if current is None or current.kid != kid:
                    if current is not None:
                        current.retired_at = now
                    if known is not None:  # a key used before comes back
                        known.retired_at = None
                    else:
                        session.add(
                            BackendKey(kid=kid, backend_id=backend_id, jwk=key, created_at=now)
                        )
                    _audit(
                        session,
                        now,
                        backend_actor(backend_id),
                        "backend.key",
                        backend_id=backend_id,
                        before={"kid": current.kid if current else None},
                        after={"kid": kid},
                    )
                    session.flush()
                keys = self._published_keys(session, backend_id, now)
        except IntegrityError as exc:  # another backend registered the same key just now
            raise AlreadyExists("this key is registered to another backend") from exc
        return PublishedKeys(backend_id=backend_id, current_kid=kid, keys=keys)

    def backend_jwks(self, backend_id: str) -> list[dict[str, str]]:
        """The backend's current key and those replaced less than 30 minutes ago."""
        now = self._ctx.clock.now()
        with transaction(self._ctx.read) as session:
            if session.get(MarketplaceBackend, backend_id) is None:
                raise NotFound("no such backend")
            return self._published_keys(session, backend_id, now)

    @staticmethod
    def _published_keys(session: Session, backend_id: str, now: datetime) -> list[dict[str, str]]:
        horizon = now - _KEY_PUBLISHED_AFTER_REPLACEMENT
        rows = session.scalars(
            select(BackendKey).where(
                BackendKey.backend_id == backend_id,
                or_(BackendKey.retired_at.is_(None), BackendKey.retired_at > horizon),
            )
        ).all()
        # The current key first, then the others, most recently replaced first.
        ordered = sorted(
            rows,
            key=lambda k: (k.retired_at is not None, -(k.retired_at or now).timestamp(), k.kid),
        )
        return [{**k.jwk, "kid": k.kid, "alg": APP_ACCESS_ALG, "use": "sig"} for k in ordered]

    # --- apps (operator) ------------------------------------------------------------------------

    def create_app(self, spec: AppSpec) -> MarketplaceApp:
        problems = _spec_problems(spec)
        if problems:
            raise ValidationFailed("; ".join(problems))
        now = self._ctx.clock.now()
        try:
            with transaction(self._ctx.write) as session:
                if session.get(MarketplaceApp, spec.id) is not None:
                    raise AlreadyExists(f"an app with the id {spec.id!r} is listed already")
                app = MarketplaceApp(id=spec.id, created_at=now)
                _apply_spec(app, spec)
                session.add(app)
                _audit(session, now, OPERATOR, "app.create", app_id=app.id, after=_app_record(app))
        except IntegrityError as exc:
            raise AlreadyExists(f"an app with the id {spec.id!r} is listed already") from exc
        return app

    def update_app(self, spec: AppSpec) -> MarketplaceApp:
        """Replace the listing of the app ``spec.id`` (a new artifact, new URLs, new prices)."""
        problems = _spec_problems(spec)
        if problems:
            raise ValidationFailed("; ".join(problems))
        now = self._ctx.clock.now()
        with transaction(self._ctx.write) as session:
            app = session.get(MarketplaceApp, spec.id)
            if app is None:
                raise NotFound(f"no app {spec.id!r} is listed")
            before = _app_record(app)
            _apply_spec(app, spec)
            _audit(
                session,
                now,
                OPERATOR,
                "app.update",
                app_id=app.id,
                before=before,
                after=_app_record(app),
            )
        return app

    def list_apps(self) -> list[MarketplaceApp]:
        with transaction(self._ctx.read) as session:
            return list(session.scalars(select(MarketplaceApp).order_by(MarketplaceApp.id)))

    # --- licenses -------------------------------------------------------------------------------

    def request_license(self, backend_id: str, app_id: str, plan: MarketplacePlan) -> LicenseChange:
        """Start the trial, or order a paid plan (``pending`` until the operator activates it).

        A plan priced 0 is free: its license is ``active`` at once and never lapses.
        """
        plan = Plan(plan)
        now = self._ctx.clock.now()
        with transaction(self._ctx.write) as session:
            self._lock_backend(session, backend_id)
            app = session.get(MarketplaceApp, app_id)
            if app is None:
                raise NotFound(f"no app {app_id!r} in the catalog")
            lic = self._license(session, backend_id, app_id)
            state = self._settle(session, lic, now) if lic is not None else None
            if lic is not None and state == Status.REVOKED:
                raise LicenseInactive("the operator revoked this license; only they can restore it")
            before = _license_record(lic) if lic is not None else None
            if plan == Plan.TRIAL:
                if lic is not None and state == Status.TRIAL:  # a repeat while it runs
                    return LicenseChange(_view(lic, now), changed=False)
                if lic is not None and lic.trial_ends_at is not None:
                    raise IdempotencyConflict("this backend has had its trial of this app")
                if state in (Status.ACTIVE, Status.GRACE):
                    raise AlreadyExists("this backend holds a paid license of this app")
                lic = lic or self._new_license(session, backend_id, app_id, now)
                trial_end = now + self._trial
                lic.trial_ends_at = trial_end
                if state != Status.PENDING:  # a pending order stays; the trial runs meanwhile
                    lic.plan = Plan.TRIAL.value
                    lic.started_at, lic.expires_at = now, trial_end
                    lic.paid_at = lic.grace_until = None
            else:
                if _price(app, plan) is None:
                    raise ValidationFailed(f"the app {app_id!r} is not offered on the {plan} plan")
                if lic is not None and lic.plan == plan and state != Status.DISABLED:
                    return LicenseChange(_view(lic, now), changed=False)
                if state in (Status.ACTIVE, Status.GRACE):
                    raise AlreadyExists(
                        "this backend holds a paid license of this app; the operator changes plans"
                    )
                lic = lic or self._new_license(session, backend_id, app_id, now)
                lic.plan = plan.value
                lic.paid_at = lic.started_at = lic.expires_at = lic.grace_until = None
                if _price(app, plan) == 0:
                    # Free: nothing to pay, so nothing to wait for and nothing to renew. The
                    # license is active at once and, whatever the plan, does not lapse.
                    lic.paid_at = lic.started_at = now
            lic.status = license_state(lic, now).value
            lic.updated_at = now
            _audit(
                session,
                now,
                backend_actor(backend_id),
                "license.request",
                backend_id=backend_id,
                app_id=app_id,
                before=before,
                after=_license_record(lic),
            )
            return LicenseChange(_view(lic, now), changed=True)

    def activate_license(
        self, backend_id: str, app_id: str, *, until: datetime | None = None
    ) -> LicenseView:
        """Mark a paid license paid (operator): active for its period, or until ``until``.

        A license still active or in grace is renewed from the end of its period, so paying
        late neither loses nor gains days; otherwise the period starts now. Activation also
        lifts a revocation.
        """
        now = self._ctx.clock.now()
        with transaction(self._ctx.write) as session:
            self._lock_backend(session, backend_id)
            lic = self._license(session, backend_id, app_id)
            if lic is None:
                raise NotFound(f"backend {backend_id} has not requested a license of {app_id!r}")
            state = self._settle(session, lic, now)
            if lic.plan == Plan.TRIAL:
                raise ValidationFailed(
                    "this license is a trial; the backend must order a paid plan first"
                )
            plan = Plan(lic.plan)
            if plan == Plan.PERPETUAL and until is not None:
                raise ValidationFailed("a perpetual license does not expire; drop --until")
            if until is not None and until <= now:
                raise ValidationFailed("--until must be in the future")
            if state == Status.ACTIVE and lic.expires_at is None and until is None:
                return _view(lic, now)  # perpetual or free: it never ends, nothing to extend
            before = _license_record(lic)
            renewal = state in (Status.ACTIVE, Status.GRACE) and lic.expires_at is not None
            start = lic.expires_at if renewal and lic.expires_at is not None else now
            if plan == Plan.PERPETUAL:
                lic.expires_at = lic.grace_until = None
            else:
                lic.expires_at = until or start + _PERIOD[plan]
                lic.grace_until = lic.expires_at + self._grace
            lic.started_at = start
            lic.paid_at = now
            lic.revoked_at = None
            lic.status = license_state(lic, now).value
            lic.updated_at = now
            _audit(
                session,
                now,
                OPERATOR,
                "license.activate",
                backend_id=backend_id,
                app_id=app_id,
                before=before,
                after=_license_record(lic),
            )
            return _view(lic, now)

    def revoke_license(self, backend_id: str, app_id: str) -> LicenseView:
        """Withdraw a license now (operator); the app leaves ``installed`` and the snapshot."""
        now = self._ctx.clock.now()
        with transaction(self._ctx.write) as session:
            self._lock_backend(session, backend_id)
            lic = self._license(session, backend_id, app_id)
            if lic is None:
                raise NotFound(f"backend {backend_id} holds no license of {app_id!r}")
            self._settle(session, lic, now)
            if lic.revoked_at is None:
                before = _license_record(lic)
                lic.revoked_at = now
                lic.status = Status.REVOKED.value
                lic.updated_at = now
                _audit(
                    session,
                    now,
                    OPERATOR,
                    "license.revoke",
                    backend_id=backend_id,
                    app_id=app_id,
                    before=before,
                    after=_license_record(lic),
                )
            return _view(lic, now)

    # --- installations --------------------------------------------------------------------------

    def install(self, backend_id: str, app_id: str, config: Mapping[str, Any]) -> InstallResult:
        """Install an app on a backend with an active or trial license (idempotent)."""
        now = self._ctx.clock.now()
        with transaction(self._ctx.write) as session:
            self._lock_backend(session, backend_id)
            app = session.get(MarketplaceApp, app_id)
            if app is None:
                raise NotFound(f"no app {app_id!r} in the catalog")
            lic = self._license(session, backend_id, app_id)
            state = self._settle(session, lic, now) if lic is not None else None
            if state not in INSTALLABLE_LICENSE_STATUSES:
                held = f"the license is {state}" if state else "there is no license"
                raise LicenseInactive(
                    f"installing needs an active or trial license of {app_id!r}; {held}"
                )
            actor = backend_actor(backend_id)
            inst = self._installation(session, backend_id, app_id)
            if inst is not None:
                if inst.config != dict(config):
                    before = _installation_record(inst)
                    inst.config = dict(config)
                    _audit(
                        session,
                        now,
                        actor,
                        "installation.config",
                        backend_id=backend_id,
                        app_id=app_id,
                        before=before,
                        after=_installation_record(inst),
                    )
                return InstallResult(installation=inst, app=app, created=False)
            inst = Installation(
                backend_id=backend_id, app_id=app_id, installed_at=now, config=dict(config)
            )
            session.add(inst)
            _audit(
                session,
                now,
                actor,
                "installation.create",
                backend_id=backend_id,
                app_id=app_id,
                after=_installation_record(inst),
            )
            enqueue_callback(session, now, backend_id, app_id, CallbackKind.INSTALLED)
            return InstallResult(installation=inst, app=app, created=True)

    def uninstall(self, backend_id: str, app_id: str) -> bool:
        """Remove an installation; ``False`` if there was none (idempotent)."""
        now = self._ctx.clock.now()
        with transaction(self._ctx.write) as session:
            self._lock_backend(session, backend_id)
            if session.get(MarketplaceApp, app_id) is None:
                raise NotFound(f"no app {app_id!r} in the catalog")
            inst = self._installation(session, backend_id, app_id)
            if inst is None:
                return False
            _audit(
                session,
                now,
                backend_actor(backend_id),
                "installation.delete",
                backend_id=backend_id,
                app_id=app_id,
                before=_installation_record(inst),
            )
            session.delete(inst)
            enqueue_callback(session, now, backend_id, app_id, CallbackKind.UNINSTALLED)
            return True

    # --- reads ----------------------------------------------------------------------------------

    def catalog(self, backend_id: str) -> list[CatalogEntry]:
        """Every listed app with this backend's license and installation."""
        now = self._ctx.clock.now()
        with transaction(self._ctx.read) as session:
            apps = list(session.scalars(select(MarketplaceApp).order_by(MarketplaceApp.id)))
            licenses = {
                lic.app_id: lic
                for lic in session.scalars(
                    select(BackendLicense).where(BackendLicense.backend_id == backend_id)
                )
            }
            installations = {
                inst.app_id: inst
                for inst in session.scalars(
                    select(Installation).where(Installation.backend_id == backend_id)
                )
            }
        self._settle_stale(licenses.values(), now)
        return [
            CatalogEntry(
                app=app,
                license=_view(licenses[app.id], now) if app.id in licenses else None,
                installation=installations.get(app.id),
            )
            for app in apps
        ]

    def installed(self, backend_id: str) -> list[InstalledEntry]:
        """The apps installed on this backend whose license is usable now."""
        now = self._ctx.clock.now()
        with transaction(self._ctx.read) as session:
            rows = session.execute(
                select(Installation, MarketplaceApp, BackendLicense)
                .join(MarketplaceApp, MarketplaceApp.id == Installation.app_id)
                .join(
                    BackendLicense,
                    and_(
                        BackendLicense.backend_id == Installation.backend_id,
                        BackendLicense.app_id == Installation.app_id,
                    ),
                )
                .where(Installation.backend_id == backend_id)
                .order_by(MarketplaceApp.id)
            ).all()
        self._settle_stale((row[2] for row in rows), now)
        entries = (InstalledEntry(app, inst, _view(lic, now)) for inst, app, lic in rows)
        return [entry for entry in entries if entry.license.usable]

    def entitlements(self, app_id: str) -> str:
        """The signed snapshot of the backends entitled to ``app_id`` now.

        Entitled: the app is installed on the backend and the backend's license is usable
        (the same rule as ``installed``).
        """
        now = self._ctx.clock.now()
        with transaction(self._ctx.read) as session:
            if session.get(MarketplaceApp, app_id) is None:
                raise NotFound(f"no app {app_id!r} in the catalog")
            licenses = list(
                session.scalars(
                    select(BackendLicense)
                    .join(
                        Installation,
                        and_(
                            Installation.backend_id == BackendLicense.backend_id,
                            Installation.app_id == BackendLicense.app_id,
                        ),
                    )
                    .where(BackendLicense.app_id == app_id)
                )
            )
        self._settle_stale(licenses, now)
        entitled = [lic.backend_id for lic in licenses if _view(lic, now).usable]
        snapshot, _exp = self._tokens.sign_entitlements(app_id, entitled, now=now)
        return snapshot

    def audit_trail(
        self, *, backend_id: str | None = None, app_id: str | None = None
    ) -> list[MarketplaceAudit]:
        with transaction(self._ctx.read) as session:
            query = select(MarketplaceAudit).order_by(MarketplaceAudit.id)
            if backend_id is not None:
                query = query.where(MarketplaceAudit.backend_id == backend_id)
            if app_id is not None:
                query = query.where(MarketplaceAudit.app_id == app_id)
            return list(session.scalars(query))

    # --- the clock's transitions ----------------------------------------------------------------

    def settle_due(self) -> int:
        """Write (and audit) every state change the clock has made since it was last written.

        The periodic sweeper calls this; reads do the same for the licenses they look at.
        Returns how many licenses changed.
        """
        now = self._ctx.clock.now()
        with transaction(self._ctx.read) as session:
            due = list(
                session.scalars(
                    select(BackendLicense).where(
                        or_(
                            and_(
                                BackendLicense.status == Status.TRIAL.value,
                                BackendLicense.trial_ends_at <= now,
                            ),
                            and_(
                                BackendLicense.status == Status.ACTIVE.value,
                                BackendLicense.expires_at <= now,
                            ),
                            and_(
                                BackendLicense.status == Status.GRACE.value,
                                BackendLicense.grace_until <= now,
                            ),
                        )
                    )
                )
            )
        return self._settle_stale(due, now)

    def _settle_stale(self, licenses: Iterable[BackendLicense], now: datetime) -> int:
        stale = [lic for lic in licenses if lic.status != license_state(lic, now)]
        changed = 0
        for lic in stale:
            with transaction(self._ctx.write) as session:
                self._lock_backend(session, lic.backend_id)
                current = self._license(session, lic.backend_id, lic.app_id)
                if current is not None and current.status != license_state(current, now):
                    self._settle(session, current, now)
                    changed += 1
        return changed

    @staticmethod
    def _settle(session: Session, lic: BackendLicense, now: datetime) -> MarketplaceLicenseStatus:
        state = license_state(lic, now)
        if lic.status != state:
            before = _license_record(lic)
            lic.status = state.value
            lic.updated_at = now
            _audit(
                session,
                now,
                CLOCK,
                "license.transition",
                backend_id=lic.backend_id,
                app_id=lic.app_id,
                before=before,
                after=_license_record(lic),
            )
        return state

    # --- rows -----------------------------------------------------------------------------------

    @staticmethod
    def _lock_backend(session: Session, backend_id: str) -> MarketplaceBackend:
        backend = session.scalar(
            select(MarketplaceBackend)
            .where(MarketplaceBackend.id == backend_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        if backend is None:
            raise NotFound(f"no backend {backend_id}")
        return backend

    @staticmethod
    def _license(session: Session, backend_id: str, app_id: str) -> BackendLicense | None:
        return session.scalar(
            select(BackendLicense)
            .where(BackendLicense.backend_id == backend_id, BackendLicense.app_id == app_id)
            .execution_options(populate_existing=True)
        )

    @staticmethod
    def _installation(session: Session, backend_id: str, app_id: str) -> Installation | None:
        return session.scalar(
            select(Installation).where(
                Installation.backend_id == backend_id, Installation.app_id == app_id
            )
        )

    @staticmethod
    def _new_license(
        session: Session, backend_id: str, app_id: str, now: datetime
    ) -> BackendLicense:
        lic = BackendLicense(
            backend_id=backend_id,
            app_id=app_id,
            plan=Plan.TRIAL.value,
            status=Status.PENDING.value,
            created_at=now,
            updated_at=now,
        )
        session.add(lic)
        return lic


def _price(app: MarketplaceApp, plan: MarketplacePlan) -> int | None:
    return {
        Plan.MONTHLY: app.price_monthly,
        Plan.YEARLY: app.price_yearly,
        Plan.PERPETUAL: app.price_perpetual,
    }.get(plan)
