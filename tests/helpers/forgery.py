"""Building JWTs by hand: re-signing, tampering and composing tokens no honest signer would make."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable
from typing import Any

import jwt
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64json(value: Any) -> str:
    return b64url(json.dumps(value, separators=(",", ":")).encode("utf-8"))


def claims_of(token: str) -> dict[str, Any]:
    """The payload of ``token``, unverified."""
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return claims


def header_of(token: str) -> dict[str, Any]:
    return dict(jwt.get_unverified_header(token))


def compose(header: dict[str, Any], payload: dict[str, Any], sign: Callable[[bytes], bytes]) -> str:
    """A compact JWS of exactly this header and payload, signed by ``sign`` over the input."""
    signing_input = f"{b64json(header)}.{b64json(payload)}"
    return f"{signing_input}.{b64url(sign(signing_input.encode('ascii')))}"


def rs256(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> Callable[[bytes], bytes]:
    assert isinstance(key, rsa.RSAPrivateKey)
    return lambda data: key.sign(data, padding.PKCS1v15(), hashes.SHA256())


def hs256(secret: bytes) -> Callable[[bytes], bytes]:
    return lambda data: hmac.new(secret, data, hashlib.sha256).digest()


def unsigned(_data: bytes) -> bytes:
    return b""


def sign(
    claims: dict[str, Any],
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey,
    alg: str,
    **headers: Any,
) -> str:
    """Sign ``claims`` with PyJWT (``typ: JWT`` plus ``headers``)."""
    return jwt.encode(claims, key, algorithm=alg, headers={"typ": "JWT", **headers})
