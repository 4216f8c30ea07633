"""Key identity for signed documents (tokens, leases, license files): the same definitions on
both sides of the wire."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from .core import PIN_PREFIX

# --- key identity (the same definitions on both sides of the wire) ------------------------------


def b64url(data: bytes) -> str:
    """Base64url without padding (RFC 7515 §2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def public_key_pin(public_key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey) -> str:
    """The pin of a key: ``sha256/`` + base64url(SHA-256 of its DER SubjectPublicKeyInfo)."""
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return PIN_PREFIX + b64url(hashlib.sha256(der).digest())


def jwk_thumbprint(jwk: Mapping[str, Any]) -> str:
    """RFC 7638 SHA-256 thumbprint of a public RSA or EC JWK: the ``kid`` of every key."""
    required = ("e", "kty", "n") if jwk["kty"] == "RSA" else ("crv", "kty", "x", "y")
    canonical = json.dumps({k: jwk[k] for k in required}, separators=(",", ":"), sort_keys=True)
    return b64url(hashlib.sha256(canonical.encode("utf-8")).digest())
