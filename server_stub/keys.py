"""Signing keys: creation on first start, 0600 files, RFC 7638 kids, pins, JWKS and rotation.

Layout of ``<data dir>/keys``: one PEM file per private key (``<kid>.pem``, mode 0600) and a
``manifest.json`` listing every key with its purpose and when it was retired. A retired key stops
signing at once and stays published until the last token it can have signed has expired.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from filelock import FileLock
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from agent.protocol import (
    ACCESS_TOKEN_ALG,
    KEY_PURPOSE_AUTH,
    KEY_PURPOSE_LICENSE,
    LICENSE_FILE_ALG,
    jwk_thumbprint,
    public_key_pin,
)

from .clock import Clock

log = logging.getLogger("tgflow.server.keys")

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey

ALG_BY_PURPOSE: Mapping[str, str] = {
    KEY_PURPOSE_AUTH: ACCESS_TOKEN_ALG,
    KEY_PURPOSE_LICENSE: LICENSE_FILE_ALG,
}
_MANIFEST = "manifest.json"
_RELOAD_CHECK_SECONDS = 2.0


class KeyStoreError(Exception):
    """The key directory cannot be read or written."""


def public_jwk(public_key: PublicKey) -> dict[str, Any]:
    if isinstance(public_key, rsa.RSAPublicKey):
        return dict(RSAAlgorithm.to_jwk(public_key, as_dict=True))
    return dict(ECAlgorithm.to_jwk(public_key, as_dict=True))


def _generate(purpose: str) -> PrivateKey:
    if purpose == KEY_PURPOSE_AUTH:
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ec.generate_private_key(ec.SECP256R1())


@dataclass(frozen=True)
class SigningKey:
    kid: str
    purpose: str
    alg: str
    created_at: datetime
    retired_at: datetime | None
    private_key: PrivateKey
    public_key: PublicKey
    pin: str

    def jwk(self) -> dict[str, Any]:
        return {**public_jwk(self.public_key), "kid": self.kid, "alg": self.alg, "use": "sig"}


class KeyStore:
    """The server's key pairs, kept in sync with the files so that CLI rotations are seen."""

    def __init__(
        self, directory: Path, clock: Clock, token_lifetimes: Mapping[str, timedelta]
    ) -> None:
        self.directory = directory
        self._clock = clock
        self._lifetimes = dict(token_lifetimes)
        self._keys: list[SigningKey] = []
        self._mtime_ns = -1
        self._checked_at = 0.0
        self._lock = FileLock(str(directory / "keys.lock"))

    # --- lifecycle ------------------------------------------------------------------------------

    def ensure(self) -> KeyStore:
        """Create the directory and any missing key pair, then load every key."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            with self._lock:
                manifest = self._read_manifest()
                changed = False
                for purpose in ALG_BY_PURPOSE:
                    if not any(
                        e["purpose"] == purpose and e["retired_at"] is None for e in manifest
                    ):
                        manifest.append(self._create_key_file(purpose))
                        changed = True
                if changed:
                    self._write_manifest(manifest)
        except OSError as exc:
            raise KeyStoreError(f"cannot use key directory {self.directory}: {exc}") from exc
        self._load()
        return self

    def open_existing(self) -> KeyStore:
        """Load the keys already there, creating nothing; :class:`KeyStoreError` when none."""
        if not (self.directory / _MANIFEST).is_file():
            raise KeyStoreError(f"no signing keys in {self.directory}")
        self._load()
        return self

    def rotate(self, purpose: str) -> SigningKey:
        """Retire the active key of ``purpose`` and create a new one; returns the new key."""
        if purpose not in ALG_BY_PURPOSE:
            raise KeyStoreError(f"unknown key purpose {purpose!r}")
        now = self._clock.now()
        with self._lock:
            manifest = self._read_manifest()
            for entry in manifest:
                if entry["purpose"] == purpose and entry["retired_at"] is None:
                    entry["retired_at"] = now.isoformat()
            entry = self._create_key_file(purpose)
            manifest.append(entry)
            self._write_manifest(manifest)
        self._load()
        log.info("key rotated", extra={"purpose": purpose, "kid": entry["kid"]})
        return self.by_kid(entry["kid"], purpose) or self.signing_key(purpose)

    # --- queries --------------------------------------------------------------------------------

    def signing_key(self, purpose: str) -> SigningKey:
        self._maybe_reload()
        active = [k for k in self._keys if k.purpose == purpose and k.retired_at is None]
        if not active:
            raise KeyStoreError(f"no active {purpose} key")
        return max(active, key=lambda k: k.created_at)

    def by_kid(self, kid: str, purpose: str) -> SigningKey | None:
        """A published key of ``purpose`` with this kid (never a key of another purpose)."""
        self._maybe_reload()
        for key in self._keys:
            if key.kid == kid and key.purpose == purpose and self._is_published(key):
                return key
        return None

    def all_keys(self) -> list[SigningKey]:
        self._maybe_reload()
        return list(self._keys)

    def published(self) -> list[SigningKey]:
        return [k for k in self.all_keys() if self._is_published(k)]

    def jwks(self) -> dict[str, Any]:
        return {"keys": [k.jwk() for k in self.published()]}

    def state(self, key: SigningKey) -> str:
        if key.retired_at is None:
            return "active"
        return "retired (published)" if self._is_published(key) else "expired"

    def _is_published(self, key: SigningKey) -> bool:
        if key.retired_at is None:
            return True
        return self._clock.now() < key.retired_at + self._lifetimes[key.purpose]

    # --- files ----------------------------------------------------------------------------------

    def _create_key_file(self, purpose: str) -> dict[str, Any]:
        private = _generate(purpose)
        kid = jwk_thumbprint(public_jwk(private.public_key()))
        pem = private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        fd = os.open(self.directory / f"{kid}.pem", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)
        return {
            "kid": kid,
            "purpose": purpose,
            "alg": ALG_BY_PURPOSE[purpose],
            "created_at": self._clock.now().isoformat(),
            "retired_at": None,
        }

    def _read_manifest(self) -> list[dict[str, Any]]:
        path = self.directory / _MANIFEST
        if not path.exists():
            return []
        data = json.loads(path.read_text(encoding="utf-8"))
        return list(data["keys"])

    def _write_manifest(self, manifest: list[dict[str, Any]]) -> None:
        tmp = self.directory / f"{_MANIFEST}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump({"keys": manifest}, fh, indent=2)
        os.replace(tmp, self.directory / _MANIFEST)

    def _load(self) -> None:
        path = self.directory / _MANIFEST
        try:
            mtime = path.stat().st_mtime_ns
            keys = []
            for entry in self._read_manifest():
                pem = (self.directory / f"{entry['kid']}.pem").read_bytes()
                private = serialization.load_pem_private_key(pem, password=None)
                if not isinstance(private, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
                    raise KeyStoreError(f"unsupported key type in {entry['kid']}.pem")
                public = private.public_key()
                retired = entry["retired_at"]
                keys.append(
                    SigningKey(
                        kid=entry["kid"],
                        purpose=entry["purpose"],
                        alg=entry["alg"],
                        created_at=datetime.fromisoformat(entry["created_at"]),
                        retired_at=datetime.fromisoformat(retired) if retired else None,
                        private_key=private,
                        public_key=public,
                        pin=public_key_pin(public),
                    )
                )
        except (OSError, ValueError, KeyError) as exc:
            raise KeyStoreError(f"cannot load keys from {self.directory}: {exc}") from exc
        self._keys = keys
        self._mtime_ns = mtime
        self._checked_at = time.monotonic()

    def _maybe_reload(self) -> None:
        # Another process (the CLI, another worker) may have rotated; a stat every few
        # seconds keeps every worker signing with the same key without a restart.
        now = time.monotonic()
        if now - self._checked_at < _RELOAD_CHECK_SECONDS:
            return
        self._checked_at = now
        try:
            mtime = (self.directory / _MANIFEST).stat().st_mtime_ns
        except OSError:
            return
        if mtime != self._mtime_ns:
            self._load()
