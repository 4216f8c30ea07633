"""The tenant backends' public keys, as an app sees them: a per-backend JWKS cache.

A User App Access Token is signed by the backend that issued it, with the key it registered with
the marketplace. The marketplace publishes each backend's keys at
``GET {marketplace_url}/marketplace/backends/{backend_id}/jwks.json``; :class:`BackendKeyCache`
fetches them and keeps them, so that tokens verify without a request (seed 000: "apps cache the
backends' public keys for 24 hours; validation is static, without API calls").

Rules (docs/marketplace.md, "App side"):

- a backend's keys are kept ``ttl`` (24 h) after the last successful fetch; a key asked for within
  that time is answered from memory, without I/O;
- an unknown ``kid``, or a known one whose backend's keys are older than ``ttl``, triggers a
  refetch of that backend's JWKS, at most once per ``min_refetch_interval`` (60 s) per backend:
  every attempt counts, failed ones too, and a ``kid`` still unknown in between is refused at
  once;
- a fetch that fails (no connection, non-200, not JSON, too large, no usable key) never removes a
  key already known: unlike PyJWT's ``PyJWKClient``, an outage of the marketplace cannot lock the
  users of an app out. Only a successful fetch replaces a backend's keys (keys it no longer lists
  are dropped: that is how a backend retires a key);
- only EC P-256 public keys with a ``kid`` that is the RFC 7638 thumbprint of the key are used;
  an entry with a private member, another ``kty``/``crv``, an ``alg`` other than ``ES256`` or a
  ``use`` other than ``sig`` is logged and ignored;
- with ``cache_dir``, the accepted keys are kept in ``cache_dir/marketplace-backend-jwks.json``
  (mode 0600, written atomically) and loaded at start, so a restart needs no network. The file is
  not trusted: its entries pass the same checks as a fetch;
- the cache is thread-safe; concurrent callers needing the same backend share one fetch.

The cache is synchronous (httpx's blocking client): a fetch happens at most once a minute per
backend and once a day per backend in steady state, and the verifier's async methods run it in a
worker thread (``asyncio.to_thread``) only when one is due.
"""

from __future__ import annotations

import collections
import json
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Final
from urllib.parse import quote

import httpx
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm
from jwt.exceptions import InvalidKeyError

from agent.clock import Clock, SystemClock
from agent.marketplace.contract import APP_ACCESS_ALG, BACKEND_JWKS_PATH, is_valid_id
from agent.marketplace.errors import AppTokenInvalid, UnknownSigningKey
from agent.private_files import write_private_file
from agent.protocol import jwk_thumbprint

log = logging.getLogger("tgflow.agent.marketplace")

#: How long a backend's keys are used after the last successful fetch before a refetch.
DEFAULT_TTL: Final = timedelta(hours=24)
#: At most one fetch of one backend's JWKS per this interval.
DEFAULT_MIN_REFETCH_INTERVAL: Final = timedelta(seconds=60)
#: At most this many fetches per minute for backends of which no key is known yet: tokens with
#: made-up ``iss`` values cannot make the app hammer the marketplace (and get it rate-limited).
DEFAULT_NEW_BACKEND_FETCHES_PER_MINUTE: Final = 30
#: Name of the on-disk cache inside ``cache_dir``.
CACHE_FILE_NAME: Final = "marketplace-backend-jwks.json"
#: A JWKS document larger than this is refused (a backend publishes a key or two).
MAX_JWKS_BYTES: Final = 64 * 1024
#: At most this many keys per backend are used; further entries are ignored.
MAX_KEYS_PER_BACKEND: Final = 16
#: At most this many backends' fetch attempts are remembered (oldest forgotten first).
_MAX_TRACKED_BACKENDS: Final = 10_000

_JWK_PRIVATE_MEMBERS: Final = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
_CACHE_VERSION: Final = 1


@dataclass(frozen=True)
class BackendKey:
    """A public key that a backend registered with the marketplace, usable for ``ES256``."""

    backend_id: str
    kid: str
    public_key: ec.EllipticCurvePublicKey
    jwk: Mapping[str, Any] = field(repr=False)


class UnusableJwk(ValueError):
    """A JWKS entry that cannot be used, with the reason (logged and skipped by the cache)."""


def backend_key_from_jwk(backend_id: str, entry: Any) -> BackendKey:
    """Check one JWKS entry and build its :class:`BackendKey`; :class:`UnusableJwk` says why not.

    Accepted: a JSON object with ``kty`` ``EC``, ``crv`` ``P-256``, ``x``, ``y`` on the curve, no
    private member, ``alg`` absent or ``ES256``, ``use`` absent or ``sig``, and a ``kid`` equal to
    the RFC 7638 thumbprint of the key.
    """
    if not isinstance(entry, Mapping):
        raise UnusableJwk("not a JSON object")
    if _JWK_PRIVATE_MEMBERS & entry.keys():
        raise UnusableJwk("it carries private key material")
    kid = entry.get("kid")
    if not isinstance(kid, str) or not kid:
        raise UnusableJwk("no kid")
    if entry.get("kty") != "EC" or entry.get("crv") != "P-256":
        raise UnusableJwk(f"not an EC P-256 key ({entry.get('kty')!r}, {entry.get('crv')!r})")
    if entry.get("alg", APP_ACCESS_ALG) != APP_ACCESS_ALG:
        raise UnusableJwk(f"published for {entry.get('alg')!r}, not {APP_ACCESS_ALG}")
    if entry.get("use", "sig") != "sig":
        raise UnusableJwk(f"use {entry.get('use')!r} is not 'sig'")
    if not isinstance(entry.get("x"), str) or not isinstance(entry.get("y"), str):
        raise UnusableJwk("x and y must be strings")
    try:
        key: Any = ECAlgorithm.from_jwk(json.dumps(dict(entry)))
        thumbprint = jwk_thumbprint(entry)
    except (InvalidKeyError, ValueError, KeyError, TypeError) as exc:
        raise UnusableJwk(f"malformed: {exc}") from exc
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise UnusableJwk("not a P-256 public key")
    if thumbprint != kid:
        raise UnusableJwk("its kid is not the RFC 7638 thumbprint of the key")
    return BackendKey(backend_id=backend_id, kid=kid, public_key=key, jwk=dict(entry))


@dataclass
class _Entry:
    keys: dict[str, BackendKey]
    #: When the keys were last fetched successfully; ``None``: loaded from a file without a time.
    fetched_at: datetime | None


class BackendKeyCache:
    """Each tenant backend's public keys, fetched from the marketplace and cached (see module doc).

    Thread-safe. :meth:`cached_key` never does I/O; :meth:`key` may fetch (rate-limited).
    Use it as a context manager, or call :meth:`close`, to close the HTTP client it created
    (a client passed as ``http`` is left to its owner).
    """

    def __init__(
        self,
        marketplace_url: str,
        *,
        http: httpx.Client | None = None,
        clock: Clock | None = None,
        ttl: timedelta = DEFAULT_TTL,
        min_refetch_interval: timedelta = DEFAULT_MIN_REFETCH_INTERVAL,
        cache_dir: Path | None = None,
        timeout: float = 10.0,
        new_backend_fetches_per_minute: int = DEFAULT_NEW_BACKEND_FETCHES_PER_MINUTE,
    ) -> None:
        """Configure the cache and load ``cache_dir``'s file, if any; nothing is fetched yet.

        ``marketplace_url`` is the marketplace's base URL (``https://…``; the JWKS path is
        appended). Requests follow no redirect and time out after ``timeout`` seconds.
        """
        if ttl <= timedelta(0) or min_refetch_interval < timedelta(0):
            raise ValueError("ttl must be positive and min_refetch_interval not negative")
        if new_backend_fetches_per_minute < 1:
            raise ValueError("new_backend_fetches_per_minute must be at least 1")
        self.marketplace_url = marketplace_url.rstrip("/")
        self.cache_path = Path(cache_dir) / CACHE_FILE_NAME if cache_dir is not None else None
        self.ttl = ttl
        self.min_refetch_interval = min_refetch_interval
        #: Seconds before a request to the marketplace is abandoned.
        self.timeout = timeout
        self._clock: Clock = clock or SystemClock()
        self._given_http = http
        self._own_http: httpx.Client | None = None
        self._new_backend_budget = new_backend_fetches_per_minute
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}
        self._last_attempt: collections.OrderedDict[str, datetime] = collections.OrderedDict()
        self._new_backend_fetches: collections.deque[datetime] = collections.deque()
        self._inflight: dict[str, threading.Event] = {}
        self._load_cache()

    # --- lifecycle ------------------------------------------------------------------------------

    def http_client(self) -> httpx.Client:
        """The blocking HTTP client the cache uses: the one given, or one it owns."""
        if self._given_http is not None:
            return self._given_http
        with self._lock:
            if self._own_http is None:
                self._own_http = httpx.Client(timeout=self.timeout, follow_redirects=False)
            return self._own_http

    def close(self) -> None:
        """Close the HTTP client the cache created (not one passed in)."""
        with self._lock:
            own, self._own_http = self._own_http, None
        if own is not None:
            own.close()

    def __enter__(self) -> BackendKeyCache:
        """Use the cache in a ``with`` block; it is closed on exit."""
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close the HTTP client the cache created."""
        self.close()

    # --- queries --------------------------------------------------------------------------------

    def jwks_url(self, backend_id: str) -> str:
        """Where the marketplace publishes ``backend_id``'s keys (the id is checked and quoted)."""
        if not is_valid_id(backend_id):
            raise AppTokenInvalid(f"{backend_id!r} is not a valid backend id")
        return self.marketplace_url + BACKEND_JWKS_PATH.format(
            backend_id=quote(backend_id, safe="")
        )

    def kids(self, backend_id: str) -> frozenset[str]:
        """The ``kid`` of every usable key of ``backend_id`` known now (fresh or not)."""
        with self._lock:
            entry = self._entries.get(backend_id)
            return frozenset(entry.keys) if entry else frozenset()

    def fetched_at(self, backend_id: str) -> datetime | None:
        """When the keys of ``backend_id`` were last fetched successfully (``None``: unknown)."""
        with self._lock:
            entry = self._entries.get(backend_id)
            return entry.fetched_at if entry else None

    def cached_key(self, backend_id: str, kid: str) -> BackendKey | None:
        """The key if it is known and its backend's keys are younger than ``ttl``; never does I/O.

        ``None`` means :meth:`key` would have to consider a fetch.
        """
        now = self._clock.now()
        with self._lock:
            entry = self._entries.get(backend_id)
            if entry is None or not self._fresh(entry, now):
                return None
            return entry.keys.get(kid)

    def key(self, backend_id: str, kid: str) -> BackendKey:
        """``backend_id``'s key named ``kid``, refetching that backend's JWKS when due.

        A fetch is due when ``kid`` is unknown or the backend's keys are older than ``ttl``, and
        the backend's last attempt is at least ``min_refetch_interval`` old. A key already known
        is returned even when its refetch fails. Raises :class:`UnknownSigningKey` when the
        backend publishes no usable key named ``kid``, and :class:`AppTokenInvalid` for a
        malformed backend id.
        """
        url = self.jwks_url(backend_id)
        found = self.cached_key(backend_id, kid)
        if found is not None:
            return found
        now = self._clock.now()
        owner = False
        with self._lock:
            waiting = self._inflight.get(backend_id)
            if waiting is None and self._claim_fetch(backend_id, now):
                waiting = self._inflight[backend_id] = threading.Event()
                owner = True
        if owner:
            assert waiting is not None
            try:
                self._fetch(backend_id, url)
            finally:
                with self._lock:
                    del self._inflight[backend_id]
                waiting.set()
        elif waiting is not None:
            # Another thread is fetching this backend's keys now: its answer is ours too.
            waiting.wait(self.timeout + 1)
        with self._lock:
            entry = self._entries.get(backend_id)
            found = entry.keys.get(kid) if entry else None
        if found is None:
            raise UnknownSigningKey(f"backend {backend_id!r} publishes no usable key {kid!r}")
        return found

    def refresh(self, backend_id: str) -> bool:
        """Fetch ``backend_id``'s keys now, whatever the rate limit (it still counts as an attempt).

        ``True`` if the fetch succeeded and held at least one usable key (which then replace the
        backend's keys); ``False`` otherwise, the keys already known being kept.
        """
        url = self.jwks_url(backend_id)
        with self._lock:
            self._remember_attempt(backend_id, self._clock.now())
        return self._fetch(backend_id, url)

    # --- fetching -------------------------------------------------------------------------------

    def _fresh(self, entry: _Entry, now: datetime) -> bool:
        fetched = entry.fetched_at
        # A fetch time in the future (the clock ran back, or a foreign cache file) is not fresh.
        return fetched is not None and fetched <= now and now - fetched < self.ttl

    def _claim_fetch(self, backend_id: str, now: datetime) -> bool:
        # Called with the lock held. Claiming before fetching keeps concurrent callers from
        # fetching together.
        last = self._last_attempt.get(backend_id)
        # A clock that ran back would otherwise block refetching until it caught up.
        if last is not None and last <= now and now - last < self.min_refetch_interval:
            return False
        if backend_id not in self._entries:
            window_start = now - timedelta(minutes=1)
            fetches = self._new_backend_fetches
            while fetches and not window_start < fetches[0] <= now:
                fetches.popleft()
            if len(fetches) >= self._new_backend_budget:
                log.warning(
                    "not fetching the keys of backend %r: too many unknown backends this minute",
                    backend_id,
                )
                return False
            fetches.append(now)
        self._remember_attempt(backend_id, now)
        return True

    def _remember_attempt(self, backend_id: str, now: datetime) -> None:
        attempts = self._last_attempt
        attempts[backend_id] = now
        attempts.move_to_end(backend_id)
        while len(attempts) > _MAX_TRACKED_BACKENDS:
            attempts.popitem(last=False)

    def _fetch(self, backend_id: str, url: str) -> bool:
        try:
            response = self.http_client().get(url, timeout=self.timeout, follow_redirects=False)
        except httpx.HTTPError as exc:
            log.warning(
                "fetching the keys of backend %r failed; keeping the known keys: %s",
                backend_id,
                exc,
            )
            return False
        if response.status_code != httpx.codes.OK:
            log.warning(
                "the keys of backend %r: HTTP %s; keeping the known keys",
                backend_id,
                response.status_code,
            )
            return False
        if len(response.content) > MAX_JWKS_BYTES:
            log.warning("the JWKS of backend %r is too large; keeping the known keys", backend_id)
            return False
        try:
            document = response.json()
        except ValueError:
            log.warning("the JWKS of backend %r is not JSON; keeping the known keys", backend_id)
            return False
        keys = self._usable_keys(backend_id, document, source=url)
        if not keys:
            # Replacing the keys with nothing would let one bad answer lock every user out.
            log.warning(
                "the JWKS of backend %r holds no usable key; keeping the known keys", backend_id
            )
            return False
        with self._lock:
            self._entries[backend_id] = _Entry(keys=keys, fetched_at=self._clock.now())
        self._write_cache()
        return True

    @staticmethod
    def _usable_keys(backend_id: str, document: Any, *, source: str) -> dict[str, BackendKey]:
        entries = document.get("keys") if isinstance(document, Mapping) else None
        if not isinstance(entries, list):
            log.warning("the JWKS of backend %r from %s has no 'keys' list", backend_id, source)
            return {}
        keys: dict[str, BackendKey] = {}
        for entry in entries:
            try:
                key = backend_key_from_jwk(backend_id, entry)
            except UnusableJwk as exc:
                log.warning("a key of backend %r from %s is ignored: %s", backend_id, source, exc)
                continue
            if len(keys) >= MAX_KEYS_PER_BACKEND:
                log.warning(
                    "backend %r publishes more than %d keys; the rest are ignored",
                    backend_id,
                    MAX_KEYS_PER_BACKEND,
                )
                break
            keys[key.kid] = key
        return keys

    # --- disk cache -----------------------------------------------------------------------------

    def _load_cache(self) -> None:
        path = self.cache_path
        if path is None:
            return
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            log.warning("the backend key cache %s is unreadable; ignored: %s", path, exc)
            return
        if not isinstance(document, Mapping) or document.get("version") != _CACHE_VERSION:
            log.warning("the backend key cache %s has an unknown format; ignored", path)
            return
        if document.get("marketplace") != self.marketplace_url:
            log.warning("the backend key cache %s is for another marketplace; ignored", path)
            return
        backends = document.get("backends")
        if not isinstance(backends, Mapping):
            return
        for backend_id, stored in backends.items():
            if not is_valid_id(backend_id) or not isinstance(stored, Mapping):
                continue
            # The file gets no trust of its own: its keys pass the same checks as a fetch.
            keys = self._usable_keys(backend_id, {"keys": stored.get("keys")}, source=str(path))
            if keys:
                fetched_at = _parse_time(stored.get("fetched_at"))
                self._entries[backend_id] = _Entry(keys=keys, fetched_at=fetched_at)

    def _write_cache(self) -> None:
        path = self.cache_path
        if path is None:
            return
        # One writer at a time, each writing the state as it is when it takes the lock, so the
        # file never goes back to an older state than one already written.
        with self._write_lock:
            with self._lock:
                backends = {
                    backend_id: {
                        "fetched_at": entry.fetched_at.isoformat() if entry.fetched_at else None,
                        "keys": [dict(key.jwk) for key in entry.keys.values()],
                    }
                    for backend_id, entry in sorted(self._entries.items())
                }
            payload = {
                "version": _CACHE_VERSION,
                "marketplace": self.marketplace_url,
                "backends": backends,
            }
            try:
                write_private_file(
                    path, json.dumps(payload, indent=2).encode("utf-8"), prefix=".marketplace-jwks-"
                )
            except OSError as exc:
                log.warning("cannot write the backend key cache %s: %s", path, exc)


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return None
    return when if when.tzinfo is not None else None
