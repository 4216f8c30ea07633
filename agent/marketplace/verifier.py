"""The app side of the marketplace: verify a User App Access Token, re-validate the entitlement.

An app shown in a tenant backend's iframe receives a User App Access Token (docs/marketplace.md).
:class:`AppTokenVerifier` checks it offline (seed 000, validation levels 2 and 3):

``verify(token)`` — at load:

- the header must say ``alg: ES256`` (``none``, ``HS*``, ``RS*``, ``ES384`` … are refused before
  any key lookup) and name a ``kid``; a ``jku``, ``x5u``, ``jwk`` or ``x5c`` header is refused,
  never fetched or used, and so is a ``crit`` or ``b64`` header;
- the key is the one named by ``kid`` among the keys of the backend named by ``iss``, from the
  :class:`~agent.marketplace.jwks.BackendKeyCache` (no I/O while it is cached): a key of backend A
  never verifies a token that claims to come from backend B;
- ``typ`` must be ``app-access``, ``aud`` exactly the app's id (a string), ``sub``, ``jti``,
  ``iat`` and ``exp`` present, ``permissions`` a list of strings; ``exp``, ``iat`` and ``nbf``
  (when present) are checked against the injected clock with a leeway of at most 10 s, and a
  token may live at most 30 min (``exp - iat``).

``revalidate(access)`` / ``check_entitled(access)`` — every few minutes while the app is used:
the marketplace's entitlement snapshot (``GET /marketplace/apps/{app_id}/entitlements``, an ES256
JWS signed by the marketplace's ``license`` key) lists the backends entitled to the app now. The
verifier fetches it at most once per ``revalidate_every`` (5 min), keeps the last good one, and
*fails closed*: when fetching fails (or the answer is forged) the last good snapshot is used until
its own ``exp``, then access is refused (:class:`EntitlementsUnavailable`) until a fetch succeeds;
after a failure the fetch is retried at most once per ``retry_failed_every`` (1 min). A revoked
license thus takes effect within ``revalidate_every`` (within the snapshot's lifetime, 10 min,
when the marketplace cannot be reached), and an outage of the marketplace shorter than the
snapshot's lifetime goes unnoticed.

The snapshot's schedule and checks live in :mod:`agent.marketplace.entitlements`, the header and
time checks both tokens share in :mod:`agent.marketplace.token_checks`; this module re-exports
their public names.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

import jwt
from cryptography.hazmat.primitives.asymmetric import ec

from agent.clock import Clock, SystemClock
from agent.key_pins import PinnedKeySet
from agent.marketplace.contract import (
    APP_ACCESS_ALG,
    APP_ACCESS_TYP,
    MAX_APP_LEEWAY_SECONDS,
    MAX_APP_TOKEN_TTL,
    is_valid_id,
)
from agent.marketplace.entitlements import (
    DEFAULT_MARKETPLACE_ISSUER,
    DEFAULT_RETRY_FAILED_EVERY,
    DEFAULT_REVALIDATE_EVERY,
    MAX_SNAPSHOT_BYTES,
    EntitlementKeeper,
    EntitlementsFetch,
    EntitlementSnapshot,
    MarketplaceKey,
)
from agent.marketplace.errors import (
    AppTokenExpired,
    AppTokenInvalid,
    BackendNotEntitled,
    EntitlementsUnavailable,
)
from agent.marketplace.jwks import BackendKey, BackendKeyCache
from agent.marketplace.token_checks import APP_TOKEN_NAME as _APP_TOKEN
from agent.marketplace.token_checks import (
    MAX_TOKEN_CHARS,
    REFUSED_KEY_HEADERS,
    check_header,
    check_times,
    unverified_issuer,
    utc_from_timestamp,
)

log = logging.getLogger("tgflow.agent.marketplace")

#: Default clock leeway for ``exp``/``nbf``/``iat`` (also the maximum).
DEFAULT_LEEWAY_SECONDS: Final = MAX_APP_LEEWAY_SECONDS

__all__ = [
    "DEFAULT_LEEWAY_SECONDS",
    "DEFAULT_MARKETPLACE_ISSUER",
    "DEFAULT_RETRY_FAILED_EVERY",
    "DEFAULT_REVALIDATE_EVERY",
    "MAX_SNAPSHOT_BYTES",
    "MAX_TOKEN_CHARS",
    "REFUSED_KEY_HEADERS",
    "AppAccess",
    "AppTokenVerifier",
    "EntitlementSnapshot",
    "EntitlementsFetch",
    "MarketplaceKey",
]


@dataclass(frozen=True)
class AppAccess:
    """A verified User App Access Token: who may use the app, on behalf of which backend."""

    backend_id: str
    user_id: str
    app_id: str
    permissions: tuple[str, ...]
    jti: str
    expires_at: datetime
    issued_at: datetime
    kid: str
    claims: Mapping[str, Any] = field(repr=False, compare=False)

    def has_permission(self, permission: str) -> bool:
        """Whether the token grants ``permission``."""
        return permission in self.permissions


class AppTokenVerifier:
    """Verifies User App Access Tokens for one app and re-validates the backends' entitlement.

    Thread-safe. ``verify`` does no I/O while the issuing backend's key is cached (24 h);
    ``revalidate``/``check_entitled`` do at most one request per ``revalidate_every``. The
    ``*_async`` variants run a due fetch in a worker thread and everything else inline.
    """

    def __init__(
        self,
        app_id: str,
        keys: BackendKeyCache,
        *,
        marketplace_key: MarketplaceKey,
        clock: Clock | None = None,
        leeway: int = DEFAULT_LEEWAY_SECONDS,
        entitlements_fetch: EntitlementsFetch | None = None,
        revalidate_every: timedelta = DEFAULT_REVALIDATE_EVERY,
        retry_failed_every: timedelta = DEFAULT_RETRY_FAILED_EVERY,
        marketplace_issuer: str = DEFAULT_MARKETPLACE_ISSUER,
    ) -> None:
        """Configure the verifier; nothing is fetched yet.

        ``marketplace_key`` verifies the entitlement snapshot: the marketplace's ``license``
        public key (EC P-256), or a :class:`~agent.key_pins.PinnedKeySet` of the marketplace
        (its ``/.well-known/jwks.json`` restricted to configured pins; the snapshot's ``kid``
        picks the key, which must be an ``ES256`` one). ``entitlements_fetch`` replaces the
        default ``GET {marketplace_url}/marketplace/apps/{app_id}/entitlements`` through the key
        cache's HTTP client. ``leeway`` is in seconds, 0..10.
        """
        if not is_valid_id(app_id):
            raise ValueError(f"{app_id!r} is not a valid app id")
        if not 0 <= leeway <= MAX_APP_LEEWAY_SECONDS:
            raise ValueError(f"leeway must be between 0 and {MAX_APP_LEEWAY_SECONDS} seconds")
        if revalidate_every <= timedelta(0) or retry_failed_every <= timedelta(0):
            raise ValueError("revalidate_every and retry_failed_every must be positive")
        if isinstance(marketplace_key, ec.EllipticCurvePublicKey):
            if not isinstance(marketplace_key.curve, ec.SECP256R1):
                raise ValueError("the marketplace key must be a P-256 key (ES256)")
        elif not isinstance(marketplace_key, PinnedKeySet):
            raise TypeError("marketplace_key must be an EC P-256 public key or a PinnedKeySet")
        self.app_id = app_id
        self.keys = keys
        self.leeway = leeway
        self._clock: Clock = clock or SystemClock()
        self._entitlements = EntitlementKeeper(
            app_id,
            keys,
            marketplace_key=marketplace_key,
            leeway=leeway,
            entitlements_fetch=entitlements_fetch,
            clock=self._clock,
            revalidate_every=revalidate_every,
            retry_failed_every=retry_failed_every,
            marketplace_issuer=marketplace_issuer,
        )

    @property
    def revalidate_every(self) -> timedelta:
        """A good entitlement snapshot is refetched at most this often."""
        return self._entitlements.revalidate_every

    @property
    def retry_failed_every(self) -> timedelta:
        """After a failed fetch the next attempt waits at least this long."""
        return self._entitlements.retry_failed_every

    @property
    def marketplace_issuer(self) -> str:
        """The ``iss`` the entitlement snapshot must carry."""
        return self._entitlements.marketplace_issuer

    # --- the User App Access Token --------------------------------------------------------------

    def verify(self, token: str) -> AppAccess:
        """Verify a User App Access Token offline and return what it grants.

        Raises :class:`AppTokenInvalid` (malformed, wrong algorithm/type/issuer/audience, bad
        signature, not valid yet, too long-lived), :class:`AppTokenExpired`, or
        :class:`UnknownSigningKey` (the issuing backend publishes no such key). The only possible
        I/O is the rate-limited JWKS refetch of the issuing backend when its key is not cached.
        """
        backend_id, kid = self._check_app_token(token)
        return self._app_claims(token, self.keys.key(backend_id, kid))

    async def verify_async(self, token: str) -> AppAccess:
        """:meth:`verify` for a coroutine: a needed key fetch runs in a worker thread."""
        backend_id, kid = self._check_app_token(token)
        key = self.keys.cached_key(backend_id, kid)
        if key is None:
            key = await asyncio.to_thread(self.keys.key, backend_id, kid)
        return self._app_claims(token, key)

    def _check_app_token(self, token: str) -> tuple[str, str]:
        """Refuse what must never reach a key lookup; return the issuing backend and ``kid``."""
        kid = check_header(token, _APP_TOKEN, APP_ACCESS_ALG, AppTokenInvalid)
        # Only to find the issuer's keys: the signed decode below checks every claim again
        # (``issuer`` must be the key's own backend), so a payload read here differently from
        # PyJWT's could only select a key that then fails to verify.
        backend_id = unverified_issuer(token)
        if not is_valid_id(backend_id):
            raise AppTokenInvalid(f"the {_APP_TOKEN} names no valid issuing backend (iss)")
        return backend_id, kid

    def _app_claims(self, token: str, key: BackendKey) -> AppAccess:
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.public_key,
                algorithms=[APP_ACCESS_ALG],
                audience=self.app_id,
                # The key is the issuer's own, so this only re-states the lookup; kept for clarity.
                issuer=key.backend_id,
                options={
                    "require": ["iss", "aud", "sub", "exp", "iat", "jti", "typ", "permissions"],
                    "strict_aud": True,
                    # PyJWT would read the wall clock; the injected clock decides below.
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                },
            )
        except jwt.InvalidTokenError as exc:
            raise AppTokenInvalid(f"the {_APP_TOKEN} is invalid: {exc}") from exc
        if claims["typ"] != APP_ACCESS_TYP:
            raise AppTokenInvalid(f"the token is of type {claims['typ']!r}, not {APP_ACCESS_TYP}")
        sub, jti, permissions = claims["sub"], claims["jti"], claims["permissions"]
        if not (isinstance(sub, str) and sub and isinstance(jti, str) and jti):
            raise AppTokenInvalid(f"the {_APP_TOKEN} has a malformed sub or jti")
        if not isinstance(permissions, list) or not all(isinstance(p, str) for p in permissions):
            raise AppTokenInvalid(f"the {_APP_TOKEN}'s permissions are not a list of strings")
        now = self._clock.now()
        exp, iat = check_times(
            claims, _APP_TOKEN, now, self.leeway, AppTokenInvalid, AppTokenExpired
        )
        if exp - iat > MAX_APP_TOKEN_TTL.total_seconds():
            raise AppTokenInvalid(
                f"the {_APP_TOKEN} lives {exp - iat:.0f} s, more than the "
                f"{MAX_APP_TOKEN_TTL.total_seconds():.0f} s allowed"
            )
        return AppAccess(
            backend_id=key.backend_id,
            user_id=sub,
            app_id=self.app_id,
            permissions=tuple(permissions),
            jti=jti,
            expires_at=utc_from_timestamp(exp),
            issued_at=utc_from_timestamp(iat),
            kid=key.kid,
            claims=claims,
        )

    # --- entitlement ----------------------------------------------------------------------------

    def revalidate(self, access: AppAccess) -> AppAccess:
        """Re-check a verified access: still within its lifetime, and its backend still entitled.

        Fetches the entitlement snapshot when one is due (see the module doc). Raises
        :class:`AppTokenExpired`, :class:`BackendNotEntitled`, or :class:`EntitlementsUnavailable`
        when no valid snapshot is at hand (fail closed); returns ``access`` otherwise.
        """
        self._check_access(access)
        return self._entitled(access, self._entitlements.current())

    async def revalidate_async(self, access: AppAccess) -> AppAccess:
        """:meth:`revalidate` for a coroutine: a due snapshot fetch runs in a worker thread."""
        self._check_access(access)
        if self._entitlements.fetch_due(self._clock.now()):
            snapshot = await asyncio.to_thread(self._entitlements.current)
        else:
            snapshot = self._entitlements.usable(self._clock.now())
        return self._entitled(access, snapshot)

    def check_entitled(self, access: AppAccess) -> bool:
        """Whether ``access``'s backend is entitled to the app now (fail closed: ``False`` when
        no valid snapshot is at hand). Fetches the snapshot when one is due, like
        :meth:`revalidate`, but does not look at the token's own expiry."""
        try:
            self._entitled(access, self._entitlements.current())
        except (BackendNotEntitled, EntitlementsUnavailable) as exc:
            log.info("backend %r is refused app %r: %s", access.backend_id, self.app_id, exc)
            return False
        return True

    async def check_entitled_async(self, access: AppAccess) -> bool:
        """:meth:`check_entitled` for a coroutine: a due fetch runs in a worker thread."""
        if self._entitlements.fetch_due(self._clock.now()):
            return await asyncio.to_thread(self.check_entitled, access)
        return self.check_entitled(access)

    def entitlements(self) -> EntitlementSnapshot | None:
        """The snapshot in use now (valid at the current time), without fetching; or ``None``."""
        return self._entitlements.usable(self._clock.now())

    def refresh_entitlements(self) -> bool:
        """Fetch the snapshot now, whatever the schedule; ``True`` if a valid one was taken.

        Useful at start, so the first revalidation does not wait for the network.
        """
        return self._entitlements.refresh()

    def _check_access(self, access: AppAccess) -> None:
        if access.app_id != self.app_id:
            raise AppTokenInvalid(f"the access is for app {access.app_id!r}, not {self.app_id!r}")
        now = self._clock.now()
        if now > access.expires_at + timedelta(seconds=self.leeway):
            raise AppTokenExpired(f"the {_APP_TOKEN} expired at {access.expires_at.isoformat()}")

    def _entitled(self, access: AppAccess, snapshot: EntitlementSnapshot | None) -> AppAccess:
        if access.app_id != self.app_id:
            raise AppTokenInvalid(f"the access is for app {access.app_id!r}, not {self.app_id!r}")
        if snapshot is None:
            raise EntitlementsUnavailable(
                f"no valid entitlement snapshot for app {self.app_id!r}: access is refused"
            )
        if not snapshot.entitles(access.backend_id):
            raise BackendNotEntitled(
                f"backend {access.backend_id!r} is not entitled to app {self.app_id!r}"
            )
        return access

    def verify_snapshot(self, jws: str) -> EntitlementSnapshot:
        """Verify an entitlement snapshot for this app; :class:`SnapshotInvalid` if it is not one.

        See :meth:`agent.marketplace.entitlements.EntitlementKeeper.verify` for the checks.
        """
        return self._entitlements.verify(jws)
