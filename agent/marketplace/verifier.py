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
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final
from urllib.parse import quote

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import ec

from agent.clock import Clock, SystemClock
from agent.errors import UntrustedKey
from agent.key_pins import PinnedKeySet
from agent.marketplace.contract import (
    APP_ACCESS_ALG,
    APP_ACCESS_TYP,
    ENTITLEMENTS_ALG,
    ENTITLEMENTS_AUDIENCE,
    ENTITLEMENTS_PATH,
    ENTITLEMENTS_TYP,
    MAX_APP_LEEWAY_SECONDS,
    MAX_APP_TOKEN_TTL,
    is_valid_id,
)
from agent.marketplace.errors import (
    AppTokenExpired,
    AppTokenInvalid,
    BackendNotEntitled,
    EntitlementsUnavailable,
    SnapshotInvalid,
)
from agent.marketplace.jwks import BackendKey, BackendKeyCache

log = logging.getLogger("tgflow.agent.marketplace")

#: Default clock leeway for ``exp``/``nbf``/``iat`` (also the maximum).
DEFAULT_LEEWAY_SECONDS: Final = MAX_APP_LEEWAY_SECONDS
#: A good entitlement snapshot is refetched at most this often.
DEFAULT_REVALIDATE_EVERY: Final = timedelta(minutes=5)
#: After a failed fetch (or with no usable snapshot) the next attempt waits at least this long.
DEFAULT_RETRY_FAILED_EVERY: Final = timedelta(minutes=1)
#: The ``iss`` the reference marketplace writes into the snapshot (``TGFLOW_ISSUER`` default).
DEFAULT_MARKETPLACE_ISSUER: Final = "tgflow"
#: A longer token is refused unparsed (a real one is well under 1 KiB).
MAX_TOKEN_CHARS: Final = 8 * 1024
#: A larger entitlements answer is refused (it lists backend ids).
MAX_SNAPSHOT_BYTES: Final = 1024 * 1024
#: Headers that would let the sender choose the key; a token carrying one is refused.
REFUSED_KEY_HEADERS: Final = frozenset({"jku", "x5u", "jwk", "x5c"})

_APP_TOKEN = "app access token"
_SNAPSHOT = "entitlement snapshot"

#: Fetches the entitlement snapshot of an app: ``app_id`` → the compact JWS. Any exception it
#: raises counts as a failed fetch.
EntitlementsFetch = Callable[[str], str]
#: The marketplace's ``license`` public key, or a pinned key set holding it.
MarketplaceKey = ec.EllipticCurvePublicKey | PinnedKeySet


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


@dataclass(frozen=True)
class EntitlementSnapshot:
    """A verified entitlement snapshot: the backends entitled to the app when it was signed."""

    app_id: str
    backends: frozenset[str]
    issued_at: datetime
    expires_at: datetime
    fetched_at: datetime

    def entitles(self, backend_id: str) -> bool:
        """Whether the snapshot lists ``backend_id``."""
        return backend_id in self.backends


class _FetchFailed(Exception):
    """The default fetch could not get a snapshot; the reason is logged by the caller."""


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
        self.revalidate_every = revalidate_every
        self.retry_failed_every = retry_failed_every
        self.marketplace_issuer = marketplace_issuer
        self._marketplace_key = marketplace_key
        self._clock: Clock = clock or SystemClock()
        self._fetch_snapshot: EntitlementsFetch = entitlements_fetch or self._http_fetch
        self._lock = threading.Lock()
        self._snapshot: EntitlementSnapshot | None = None
        self._last_attempt_at: datetime | None = None
        self._inflight: threading.Event | None = None

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
        kid = _check_header(token, _APP_TOKEN, APP_ACCESS_ALG, AppTokenInvalid)
        # Only to find the issuer's keys: the signed decode below checks every claim again
        # (``issuer`` must be the key's own backend), so a payload read here differently from
        # PyJWT's could only select a key that then fails to verify.
        backend_id = _unverified_issuer(token)
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
        exp, iat = _check_times(
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
            expires_at=_when(exp),
            issued_at=_when(iat),
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
        return self._entitled(access, self._current_snapshot())

    async def revalidate_async(self, access: AppAccess) -> AppAccess:
        """:meth:`revalidate` for a coroutine: a due snapshot fetch runs in a worker thread."""
        self._check_access(access)
        if self._fetch_due(self._clock.now()):
            snapshot = await asyncio.to_thread(self._current_snapshot)
        else:
            snapshot = self._usable_snapshot(self._clock.now())
        return self._entitled(access, snapshot)

    def check_entitled(self, access: AppAccess) -> bool:
        """Whether ``access``'s backend is entitled to the app now (fail closed: ``False`` when
        no valid snapshot is at hand). Fetches the snapshot when one is due, like
        :meth:`revalidate`, but does not look at the token's own expiry."""
        try:
            self._entitled(access, self._current_snapshot())
        except (BackendNotEntitled, EntitlementsUnavailable) as exc:
            log.info("backend %r is refused app %r: %s", access.backend_id, self.app_id, exc)
            return False
        return True

    async def check_entitled_async(self, access: AppAccess) -> bool:
        """:meth:`check_entitled` for a coroutine: a due fetch runs in a worker thread."""
        if self._fetch_due(self._clock.now()):
            return await asyncio.to_thread(self.check_entitled, access)
        return self.check_entitled(access)

    def entitlements(self) -> EntitlementSnapshot | None:
        """The snapshot in use now (valid at the current time), without fetching; or ``None``."""
        return self._usable_snapshot(self._clock.now())

    def refresh_entitlements(self) -> bool:
        """Fetch the snapshot now, whatever the schedule; ``True`` if a valid one was taken.

        Useful at start, so the first revalidation does not wait for the network.
        """
        with self._lock:
            self._last_attempt_at = self._clock.now()
        return self._fetch_and_store()

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

    def _usable_snapshot(self, now: datetime) -> EntitlementSnapshot | None:
        with self._lock:
            snapshot = self._snapshot
        if snapshot is None or now > snapshot.expires_at + timedelta(seconds=self.leeway):
            return None
        return snapshot

    def _fetch_due(self, now: datetime) -> bool:
        with self._lock:
            return self._due_locked(now)

    def _due_locked(self, now: datetime) -> bool:
        last = self._last_attempt_at
        # Never more than one attempt per retry_failed_every, whatever happened (a clock that
        # ran back does not block fetching until it catches up).
        if last is not None and last <= now and now - last < self.retry_failed_every:
            return False
        snapshot = self._snapshot
        if snapshot is None or now > snapshot.expires_at + timedelta(seconds=self.leeway):
            return True
        age = now - snapshot.fetched_at
        return age < timedelta(0) or age >= self.revalidate_every

    def _current_snapshot(self) -> EntitlementSnapshot | None:
        """The snapshot to decide with, after fetching one if due; ``None`` if none is valid."""
        now = self._clock.now()
        owner = False
        with self._lock:
            waiting = self._inflight
            if waiting is None and self._due_locked(now):
                waiting = self._inflight = threading.Event()
                self._last_attempt_at = now
                owner = True
        if owner:
            assert waiting is not None
            try:
                self._fetch_and_store()
            finally:
                with self._lock:
                    self._inflight = None
                waiting.set()
        elif waiting is not None and self._usable_snapshot(now) is None:
            # Nothing to decide with yet, and a fetch is under way: wait for its answer.
            waiting.wait(self.keys.timeout + 1)
        return self._usable_snapshot(self._clock.now())

    def _fetch_and_store(self) -> bool:
        try:
            jws = self._fetch_snapshot(self.app_id)
        except Exception as exc:  # an injected fetch may fail in any way: fail closed
            log.warning("fetching the entitlement snapshot of app %r failed: %s", self.app_id, exc)
            return False
        try:
            snapshot = self.verify_snapshot(jws)
        except SnapshotInvalid as exc:
            log.warning("the entitlement snapshot of app %r is refused: %s", self.app_id, exc)
            return False
        with self._lock:
            current = self._snapshot
            if current is not None and snapshot.issued_at < current.issued_at:
                log.warning("an older entitlement snapshot of app %r is ignored", self.app_id)
                return False
            self._snapshot = snapshot
        return True

    def verify_snapshot(self, jws: str) -> EntitlementSnapshot:
        """Verify an entitlement snapshot for this app; :class:`SnapshotInvalid` if it is not one.

        ES256 with the marketplace's key, ``typ`` ``entitlements``, ``aud``
        ``tgflow-marketplace-entitlements``, ``iss`` the marketplace issuer, ``app_id`` this app,
        ``backends`` a list of strings, ``exp``/``iat`` (and ``nbf``) valid with the leeway.
        With a :class:`~agent.key_pins.PinnedKeySet`, an unknown ``kid`` may refetch the
        marketplace's JWKS (rate-limited).
        """
        kid = _check_header(jws, _SNAPSHOT, ENTITLEMENTS_ALG, SnapshotInvalid, require_kid=False)
        key = self._snapshot_key(kid)
        try:
            claims: dict[str, Any] = jwt.decode(
                jws,
                key,
                algorithms=[ENTITLEMENTS_ALG],
                audience=ENTITLEMENTS_AUDIENCE,
                issuer=self.marketplace_issuer,
                options={
                    "require": ["iss", "aud", "exp", "iat", "typ", "app_id", "backends"],
                    "strict_aud": True,
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                },
            )
        except jwt.InvalidTokenError as exc:
            raise SnapshotInvalid(f"the {_SNAPSHOT} is invalid: {exc}") from exc
        if claims["typ"] != ENTITLEMENTS_TYP:
            raise SnapshotInvalid(f"the token is of type {claims['typ']!r}, not {ENTITLEMENTS_TYP}")
        if claims["app_id"] != self.app_id:
            raise SnapshotInvalid(f"the {_SNAPSHOT} is for app {claims['app_id']!r}")
        backends = claims["backends"]
        if not isinstance(backends, list) or not all(isinstance(b, str) for b in backends):
            raise SnapshotInvalid(f"the {_SNAPSHOT}'s backends are not a list of strings")
        now = self._clock.now()
        exp, iat = _check_times(
            claims, _SNAPSHOT, now, self.leeway, SnapshotInvalid, SnapshotInvalid
        )
        return EntitlementSnapshot(
            app_id=self.app_id,
            backends=frozenset(backends),
            issued_at=_when(iat),
            expires_at=_when(exp),
            fetched_at=now,
        )

    def _snapshot_key(self, kid: str) -> ec.EllipticCurvePublicKey:
        pinned = self._marketplace_key
        if isinstance(pinned, ec.EllipticCurvePublicKey):
            return pinned
        if not kid:
            raise SnapshotInvalid(f"the {_SNAPSHOT} names no signing key (kid)")
        try:
            key = pinned.resolve_sync(kid, self.keys.http_client())
        except UntrustedKey as exc:
            raise SnapshotInvalid(f"the {_SNAPSHOT} is not signed by a pinned key: {exc}") from exc
        if key.alg != ENTITLEMENTS_ALG or not isinstance(key.public_key, ec.EllipticCurvePublicKey):
            raise SnapshotInvalid(f"the {_SNAPSHOT} names key {kid}, which signs {key.alg}")
        return key.public_key

    def _http_fetch(self, app_id: str) -> str:
        url = self.keys.marketplace_url + ENTITLEMENTS_PATH.format(app_id=quote(app_id, safe=""))
        try:
            response = self.keys.http_client().get(
                url, timeout=self.keys.timeout, follow_redirects=False
            )
        except httpx.HTTPError as exc:
            raise _FetchFailed(f"no answer from {url}: {exc}") from exc
        if response.status_code != httpx.codes.OK:
            raise _FetchFailed(f"{url} answered HTTP {response.status_code}")
        if len(response.content) > MAX_SNAPSHOT_BYTES:
            raise _FetchFailed(f"{url} answered more than {MAX_SNAPSHOT_BYTES} bytes")
        try:
            body = response.json()
        except ValueError as exc:
            raise _FetchFailed(f"{url} answered something that is not JSON") from exc
        snapshot = body.get("snapshot") if isinstance(body, Mapping) else None
        if not isinstance(snapshot, str):
            raise _FetchFailed(f"{url} answered no snapshot")
        return snapshot


# --- shared steps -------------------------------------------------------------------------------


def _unverified_issuer(token: str) -> object:
    """The ``iss`` of a compact JWS's payload, read without verifying anything (one parse)."""
    segment = token.split(".")[1]
    try:
        payload = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (ValueError, binascii.Error) as exc:
        raise AppTokenInvalid(f"the {_APP_TOKEN} is malformed: {exc}") from exc
    return payload.get("iss") if isinstance(payload, dict) else None


def _check_header(
    token: str,
    name: str,
    alg: str,
    error: type[AppTokenInvalid] | type[SnapshotInvalid],
    *,
    require_kid: bool = True,
) -> str:
    """Refuse a token whose header must never reach a key lookup; return its ``kid``."""
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_CHARS:
        raise error(f"the {name} is empty, too long or not a string")
    if token.count(".") != 2:
        raise error(f"the {name} is not a compact JWS")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.InvalidTokenError as exc:
        raise error(f"the {name} is malformed: {exc}") from exc
    if header.get("alg") != alg:
        raise error(f"the {name} must be signed with {alg}, not {header.get('alg')!r}")
    if "crit" in header or "b64" in header:
        raise error(f"the {name} carries header extensions that are refused")
    pointers = REFUSED_KEY_HEADERS & header.keys()
    if pointers:
        # The key comes from the issuer's registered keys only, never from the token itself.
        raise error(f"the {name} carries key-location headers {sorted(pointers)}")
    kid = header.get("kid")
    if kid is None and not require_kid:
        return ""  # the caller decides whether it needs one
    if not isinstance(kid, str) or not kid:
        raise error(f"the {name} names no signing key (kid)")
    return kid


def _check_times(
    claims: Mapping[str, Any],
    name: str,
    now: datetime,
    leeway: int,
    invalid: type[AppTokenInvalid] | type[SnapshotInvalid],
    expired: type[AppTokenExpired] | type[SnapshotInvalid],
) -> tuple[float, float]:
    """Check ``exp``, ``iat`` and (when present) ``nbf`` at ``now``; return ``(exp, iat)``."""
    exp, iat, nbf = claims["exp"], claims["iat"], claims.get("nbf", claims["iat"])
    if not (_is_number(exp) and _is_number(iat) and _is_number(nbf)):
        raise invalid(f"the {name} has malformed time claims")
    t = now.timestamp()
    if t > exp + leeway:
        raise expired(f"the {name} expired at {_when(exp).isoformat()}")
    if iat > t + leeway:
        raise invalid(f"the {name} was issued in the future")
    if t < nbf - leeway:
        raise invalid(f"the {name} is not valid before {_when(nbf).isoformat()}")
    if exp <= iat:
        raise invalid(f"the {name} expires before it was issued")
    return float(exp), float(iat)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _when(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)
