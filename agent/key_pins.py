"""Public-key pins and the pinned JWKS cache.

A pin is ``sha256/`` + base64url(SHA-256 of the key's DER SubjectPublicKeyInfo), without padding
(DESIGN.md, "Keys and pinning"). The agent trusts a signing key only when its pin is configured:
the server's JWKS tells the agent *which* keys exist, the pins decide *whether* one is used. An
unpinned JWKS entry is logged and ignored, so neither the network nor the on-disk cache can ever
introduce a key of their own.

:class:`PinnedKeySet` fetches ``{api_base_url}/.well-known/jwks.json``, keeps the document in a
0600 JSON file (written atomically) and loads it at start, so that the agent verifies tokens
offline. An unknown ``kid`` triggers a refetch, at most one fetch per minute; a failed fetch keeps
the keys already known.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final

import httpx
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from jwt.exceptions import InvalidKeyError

from agent.clock import Clock, SystemClock
from agent.config_checks import InvalidPin, validate_pin
from agent.errors import UnpinnedKey, UntrustedKey
from agent.protocol import (
    ACCESS_TOKEN_ALG,
    LICENSE_FILE_ALG,
    jwk_thumbprint,
    public_key_pin,
)

log = logging.getLogger("tgflow.agent.keys")

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey

#: Where the server publishes its keys, relative to the API base URL.
JWKS_PATH: Final = "/.well-known/jwks.json"
#: Name of the cache file inside the cache directory.
CACHE_FILE_NAME: Final = "jwks.json"
#: At most one fetch per this interval when a token names an unknown ``kid``.
DEFAULT_REFETCH_INTERVAL: Final = timedelta(minutes=1)
#: A JWKS document larger than this is refused (a real one holds a handful of keys).
MAX_JWKS_BYTES: Final = 256 * 1024

_JWK_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
#: The algorithm a key of each type may sign with; anything else is not used.
_ALG_FOR_KTY: Final[Mapping[str, str]] = {"RSA": ACCESS_TOKEN_ALG, "EC": LICENSE_FILE_ALG}


# --- pins ---------------------------------------------------------------------------------------


def parse_pins(setting: str) -> frozenset[str]:
    """Parse a comma-separated pins setting (``jwt_public_key_fingerprint`` in settings.ini).

    Whitespace around each pin and empty items (a trailing comma) are ignored. At least one pin
    is required: with none, no token could ever be trusted. A malformed pin raises
    :class:`InvalidPin` naming it.
    """
    pins = [item.strip() for item in setting.split(",")]
    parsed = frozenset(validate_pin(pin) for pin in pins if pin)
    if not parsed:
        raise InvalidPin(setting, "at least one pin is required")
    return parsed


# --- keys ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PinnedKey:
    """A published key whose pin is configured: the only kind of key a verifier may use."""

    kid: str
    alg: str
    pin: str
    public_key: PublicKey
    jwk: Mapping[str, Any] = field(repr=False)


class _Unusable(Exception):
    """A JWKS entry that cannot be used, with the reason (logged, never raised to callers)."""


def _key_from_jwk(entry: Any) -> tuple[str, str, PublicKey]:
    if not isinstance(entry, Mapping):
        raise _Unusable("not a JSON object")
    kid, kty, alg = entry.get("kid"), entry.get("kty"), entry.get("alg")
    if not isinstance(kid, str) or not kid:
        raise _Unusable("no kid")
    if _JWK_PRIVATE_MEMBERS & entry.keys():
        raise _Unusable("it carries private key material")
    if not isinstance(kty, str) or kty not in _ALG_FOR_KTY:
        raise _Unusable(f"unsupported key type {kty!r}")
    if alg != _ALG_FOR_KTY[kty]:
        raise _Unusable(f"a {kty} key must be published for {_ALG_FOR_KTY[kty]}, not {alg!r}")
    if entry.get("use", "sig") != "sig":
        raise _Unusable(f"use {entry.get('use')!r} is not 'sig'")
    try:
        text = json.dumps(dict(entry))
        key: Any = RSAAlgorithm.from_jwk(text) if kty == "RSA" else ECAlgorithm.from_jwk(text)
        thumbprint = jwk_thumbprint(entry)
    except (InvalidKeyError, ValueError, KeyError, TypeError) as exc:
        raise _Unusable(f"malformed: {exc}") from exc
    if kty == "RSA" and not isinstance(key, rsa.RSAPublicKey):
        raise _Unusable("not an RSA public key")
    if kty == "EC" and not (
        isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1)
    ):
        raise _Unusable("not a P-256 public key")
    if thumbprint != kid:
        raise _Unusable("its kid is not the RFC 7638 thumbprint of the key")
    return kid, alg, key


# --- the pinned key set -------------------------------------------------------------------------


class PinnedKeySet:
    """The server's signing keys, restricted to the configured pins, cached in memory and on disk.

    Thread-safe. ``key(kid)`` never touches the network; ``resolve``/``resolve_sync`` refetch the
    JWKS when the ``kid`` is unknown, at most once per ``refetch_interval`` (every fetch, explicit
    or not, successful or not, counts). A fetch that fails, or whose document holds no pinned key,
    keeps the keys already known.
    """

    def __init__(
        self,
        api_base_url: str,
        pins: Iterable[str] | str,
        cache_dir: Path,
        *,
        clock: Clock | None = None,
        refetch_interval: timedelta = DEFAULT_REFETCH_INTERVAL,
        timeout: float = 10.0,
    ) -> None:
        """Configure the set and load the on-disk cache (if any); nothing is fetched yet.

        ``pins`` is the settings string (comma-separated) or the pins themselves; every pin is
        validated (:class:`InvalidPin`).
        """
        self.jwks_url = api_base_url.rstrip("/") + JWKS_PATH
        self.pins = parse_pins(pins if isinstance(pins, str) else ",".join(pins))
        self.cache_path = Path(cache_dir) / CACHE_FILE_NAME
        self._clock: Clock = clock or SystemClock()
        self._refetch_interval = refetch_interval
        self._timeout = timeout
        self._lock = threading.Lock()
        self._keys: dict[str, PinnedKey] = {}
        self._last_fetch_at: datetime | None = None
        #: Published but unpinned keys seen (kid → (pin, alg)): to say which pin is missing.
        self._unpinned: dict[str, tuple[str, str]] = {}
        self._load_cache()

    # --- queries --------------------------------------------------------------------------------

    def kids(self) -> frozenset[str]:
        """The ``kid`` of every usable (published and pinned) key known now."""
        return frozenset(self._keys)

    def key(self, kid: str) -> PinnedKey:
        """The pinned key named ``kid``, from what is known now; :class:`UnpinnedKey` when the
        server publishes it without its pin configured, :class:`UntrustedKey` otherwise."""
        found = self._keys.get(kid)
        if found is not None:
            return found
        unpinned = self._unpinned.get(kid)
        if unpinned is not None:
            raise UnpinnedKey(kid, *unpinned)
        raise UntrustedKey(f"no pinned signing key with kid {kid!r}")

    def carried_key(self, entry: Any) -> PinnedKey:
        """A key a document carries itself (a license file's ``Signing-Key``), if it is pinned.

        The same checks as a JWKS entry: a public P-256 or RSA key whose ``kid`` is its RFC 7638
        thumbprint and whose pin is configured; otherwise :class:`UntrustedKey`. It lets an
        installation that has never reached the server verify its license file, and gives
        the document's sender no more power than the JWKS has: the pins decide.
        """
        try:
            kid, alg, public_key = _key_from_jwk(entry)
        except _Unusable as exc:
            raise UntrustedKey(f"the key the document carries is unusable: {exc}") from exc
        pin = public_key_pin(public_key)
        if pin not in self.pins:
            raise UntrustedKey(f"the key the document carries ({kid}, pin {pin}) is not pinned")
        return PinnedKey(kid=kid, alg=alg, pin=pin, public_key=public_key, jwk=entry)

    async def resolve(self, kid: str, client: httpx.AsyncClient) -> PinnedKey:
        """The pinned key named ``kid``; an unknown kid triggers one rate-limited refetch."""
        if kid not in self._keys and self._claim_fetch(force=False):
            await self._fetch_async(client)
        return self.key(kid)

    def resolve_sync(self, kid: str, client: httpx.Client | None = None) -> PinnedKey:
        """Blocking :meth:`resolve`; without ``client`` a short-lived one is used."""
        if kid not in self._keys and self._claim_fetch(force=False):
            self._fetch_sync(client)
        return self.key(kid)

    # --- fetching -------------------------------------------------------------------------------

    async def refresh(self, client: httpx.AsyncClient) -> bool:
        """Fetch the JWKS now; ``True`` if it was fetched and held at least one pinned key."""
        self._claim_fetch(force=True)
        return await self._fetch_async(client)

    def refresh_sync(self, client: httpx.Client | None = None) -> bool:
        """Blocking :meth:`refresh`; without ``client`` a short-lived one is used."""
        self._claim_fetch(force=True)
        return self._fetch_sync(client)

    def _claim_fetch(self, *, force: bool) -> bool:
        # Claiming the slot before fetching keeps concurrent callers from fetching together.
        now = self._clock.now()
        with self._lock:
            last = self._last_fetch_at
            # A clock that ran back would otherwise block refetching until it caught up.
            due = last is None or now < last or now - last >= self._refetch_interval
            if not (due or force):
                return False
            self._last_fetch_at = now
            return True

    async def _fetch_async(self, client: httpx.AsyncClient) -> bool:
        try:
            response = await client.get(
                self.jwks_url, timeout=self._timeout, follow_redirects=False
            )
        except httpx.HTTPError as exc:
            log.warning("JWKS fetch failed; keeping the cached keys: %s", exc)
            return False
        return self._accept_response(response)

    def _fetch_sync(self, client: httpx.Client | None) -> bool:
        try:
            if client is None:
                with httpx.Client(timeout=self._timeout) as own:
                    response = own.get(self.jwks_url, follow_redirects=False)
            else:
                response = client.get(self.jwks_url, timeout=self._timeout, follow_redirects=False)
        except httpx.HTTPError as exc:
            log.warning("JWKS fetch failed; keeping the cached keys: %s", exc)
            return False
        return self._accept_response(response)

    def _accept_response(self, response: httpx.Response) -> bool:
        if response.status_code != httpx.codes.OK:
            log.warning(
                "JWKS fetch answered HTTP %s; keeping the cached keys", response.status_code
            )
            return False
        if len(response.content) > MAX_JWKS_BYTES:
            log.warning("JWKS document too large; keeping the cached keys")
            return False
        try:
            document = response.json()
        except ValueError:
            log.warning("JWKS document is not JSON; keeping the cached keys")
            return False
        keys = self._pinned_keys(document, source=self.jwks_url)
        if not keys:
            # Replacing the set with nothing would let a bad answer lock the agent out.
            log.warning("JWKS document holds no pinned key; keeping the cached keys")
            return False
        with self._lock:
            self._keys = keys
        self._write_cache(document)
        return True

    def _pinned_keys(self, document: Any, *, source: str) -> dict[str, PinnedKey]:
        entries = document.get("keys") if isinstance(document, Mapping) else None
        if not isinstance(entries, list):
            log.warning("JWKS from %s has no 'keys' list; ignored", source)
            return {}
        keys: dict[str, PinnedKey] = {}
        for entry in entries:
            try:
                kid, alg, public_key = _key_from_jwk(entry)
            except _Unusable as exc:
                log.warning("JWKS entry from %s ignored: %s", source, exc)
                continue
            pin = public_key_pin(public_key)
            if pin not in self.pins:
                if kid not in self._unpinned:
                    self._unpinned[kid] = (pin, alg)
                    log.warning(
                        "JWKS key %s (pin %s) from %s is not pinned; ignored", kid, pin, source
                    )
                continue
            keys[kid] = PinnedKey(kid=kid, alg=alg, pin=pin, public_key=public_key, jwk=entry)
        return keys

    # --- disk cache -----------------------------------------------------------------------------

    def _load_cache(self) -> None:
        try:
            text = self.cache_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return
        except OSError as exc:
            log.warning("cannot read the JWKS cache %s: %s", self.cache_path, exc)
            return
        try:
            document = json.loads(text)
        except ValueError:
            log.warning("the JWKS cache %s is not JSON; ignored", self.cache_path)
            return
        # The file is not trusted: its keys pass the same pin filter as fetched ones.
        jwks = document.get("jwks") if isinstance(document, Mapping) else None
        self._keys = self._pinned_keys(jwks, source=str(self.cache_path))

    def _write_cache(self, jwks: Any) -> None:
        directory = self.cache_path.parent
        payload = json.dumps(
            {"url": self.jwks_url, "fetched_at": self._clock.now().isoformat(), "jwks": jwks},
            indent=2,
        )
        tmp_name: str | None = None
        try:
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            # mkstemp creates the file 0600; rename makes the new content appear all at once.
            fd, tmp_name = tempfile.mkstemp(prefix=".jwks-", suffix=".tmp", dir=directory)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(payload)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp_name, self.cache_path)
            tmp_name = None
        except OSError as exc:
            log.warning("cannot write the JWKS cache %s: %s", self.cache_path, exc)
        finally:
            if tmp_name is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp_name)
