"""The app's entitlement snapshot: fetched when due, verified, the last good one kept.

The marketplace's entitlement snapshot (``GET /marketplace/apps/{app_id}/entitlements``, an ES256
JWS signed by the marketplace's ``license`` key) lists the backends entitled to the app now.
:class:`EntitlementKeeper` fetches it at most once per ``revalidate_every``, keeps the last good
one and *fails closed* (see :mod:`agent.marketplace.verifier` for the whole schedule);
:class:`~agent.marketplace.verifier.AppTokenVerifier` decides with it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final
from urllib.parse import quote

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import ec

from agent.clock import Clock
from agent.errors import UntrustedKey
from agent.key_pins import PinnedKeySet
from agent.marketplace.contract import (
    ENTITLEMENTS_ALG,
    ENTITLEMENTS_AUDIENCE,
    ENTITLEMENTS_PATH,
    ENTITLEMENTS_TYP,
)
from agent.marketplace.errors import SnapshotInvalid
from agent.marketplace.jwks import BackendKeyCache
from agent.marketplace.token_checks import (
    SNAPSHOT_NAME as _SNAPSHOT,
)
from agent.marketplace.token_checks import (
    check_header,
    check_times,
    utc_from_timestamp,
)

log = logging.getLogger("tgflow.agent.marketplace")

#: A good entitlement snapshot is refetched at most this often.
DEFAULT_REVALIDATE_EVERY: Final = timedelta(minutes=5)
#: After a failed fetch (or with no usable snapshot) the next attempt waits at least this long.
DEFAULT_RETRY_FAILED_EVERY: Final = timedelta(minutes=1)
#: The ``iss`` the reference marketplace writes into the snapshot (``TGFLOW_ISSUER`` default).
DEFAULT_MARKETPLACE_ISSUER: Final = "tgflow"
#: A larger entitlements answer is refused (it lists backend ids).
MAX_SNAPSHOT_BYTES: Final = 1024 * 1024

#: Fetches the entitlement snapshot of an app: ``app_id`` → the compact JWS. Any exception it
#: raises counts as a failed fetch.
EntitlementsFetch = Callable[[str], str]
#: The marketplace's ``license`` public key, or a pinned key set holding it.
MarketplaceKey = ec.EllipticCurvePublicKey | PinnedKeySet


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


class EntitlementKeeper:
    """The entitlement snapshot of one app: fetched when due, verified, the last good one kept.

    Thread-safe; at most one fetch runs at a time. A good snapshot is refetched at most once per
    ``revalidate_every``; after a failed fetch (or with no usable snapshot) the next attempt waits
    at least ``retry_failed_every``. The arguments are checked by
    :class:`~agent.marketplace.verifier.AppTokenVerifier`, which builds the keeper.
    """

    def __init__(
        self,
        app_id: str,
        keys: BackendKeyCache,
        *,
        marketplace_key: MarketplaceKey,
        clock: Clock,
        leeway: int,
        entitlements_fetch: EntitlementsFetch | None,
        revalidate_every: timedelta,
        retry_failed_every: timedelta,
        marketplace_issuer: str,
    ) -> None:
        """Keep the snapshots of ``app_id``; nothing is fetched yet (see the verifier's args)."""
        self.app_id = app_id
        self.keys = keys
        self.leeway = leeway
        self.revalidate_every = revalidate_every
        self.retry_failed_every = retry_failed_every
        self.marketplace_issuer = marketplace_issuer
        self._marketplace_key = marketplace_key
        self._clock = clock
        self._fetch_snapshot: EntitlementsFetch = entitlements_fetch or self._http_fetch
        self._lock = threading.Lock()
        self._snapshot: EntitlementSnapshot | None = None
        self._last_attempt_at: datetime | None = None
        self._inflight: threading.Event | None = None

    def refresh(self) -> bool:
        """Fetch the snapshot now, whatever the schedule; ``True`` if a valid one was taken."""
        with self._lock:
            self._last_attempt_at = self._clock.now()
        return self._fetch_and_store()

    def usable(self, now: datetime) -> EntitlementSnapshot | None:
        """The last good snapshot if still valid at ``now`` (with the leeway), else ``None``."""
        with self._lock:
            snapshot = self._snapshot
        if snapshot is None or now > snapshot.expires_at + timedelta(seconds=self.leeway):
            return None
        return snapshot

    def fetch_due(self, now: datetime) -> bool:
        """Whether :meth:`current` would fetch at ``now`` (see the schedule in the class doc)."""
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

    def current(self) -> EntitlementSnapshot | None:
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
        elif waiting is not None and self.usable(now) is None:
            # Nothing to decide with yet, and a fetch is under way: wait for its answer.
            waiting.wait(self.keys.timeout + 1)
        return self.usable(self._clock.now())

    def _fetch_and_store(self) -> bool:
        try:
            jws = self._fetch_snapshot(self.app_id)
        except Exception as exc:  # an injected fetch may fail in any way: fail closed
            log.warning("fetching the entitlement snapshot of app %r failed: %s", self.app_id, exc)
            return False
        try:
            snapshot = self.verify(jws)
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

    def verify(self, jws: str) -> EntitlementSnapshot:
        """Verify an entitlement snapshot for this app; :class:`SnapshotInvalid` if it is not one.

        ES256 with the marketplace's key, ``typ`` ``entitlements``, ``aud``
        ``tgflow-marketplace-entitlements``, ``iss`` the marketplace issuer, ``app_id`` this app,
        ``backends`` a list of strings, ``exp``/``iat`` (and ``nbf``) valid with the leeway.
        With a :class:`~agent.key_pins.PinnedKeySet`, an unknown ``kid`` may refetch the
        marketplace's JWKS (rate-limited).
        """
        kid = check_header(jws, _SNAPSHOT, ENTITLEMENTS_ALG, SnapshotInvalid, require_kid=False)
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
        exp, iat = check_times(
            claims, _SNAPSHOT, now, self.leeway, SnapshotInvalid, SnapshotInvalid
        )
        return EntitlementSnapshot(
            app_id=self.app_id,
            backends=frozenset(backends),
            issued_at=utc_from_timestamp(iat),
            expires_at=utc_from_timestamp(exp),
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
