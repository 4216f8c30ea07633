"""Minting User App Access Tokens: the tenant backend's side of the contract.

A backend holds its own EC P-256 key pair. It registers the public half with the marketplace
(:func:`public_jwk`, sent as ``PUT /marketplace/backends/me/keys {jwk}``) and signs a short-lived
token for each user who opens an app (:func:`mint_app_token`); the app checks it with
:class:`agent.marketplace.verifier.AppTokenVerifier`.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec

from agent.clock import Clock, SystemClock
from agent.marketplace.contract import (
    APP_ACCESS_ALG,
    APP_ACCESS_TYP,
    MAX_APP_TOKEN_TTL,
    is_valid_id,
)
from agent.protocol import b64url, jwk_thumbprint

_P256_COORDINATE_BYTES = 32


def public_jwk(key: ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) -> dict[str, str]:
    """The public JWK of an EC P-256 key, as a backend registers it with the marketplace.

    ``kty``, ``crv``, ``x``, ``y``, plus ``kid`` (the RFC 7638 thumbprint), ``alg`` ``ES256`` and
    ``use`` ``sig``. A private key is accepted and only its public half is written.
    """
    public = key.public_key() if isinstance(key, ec.EllipticCurvePrivateKey) else key
    if not isinstance(public.curve, ec.SECP256R1):
        raise ValueError("a backend key must be an EC P-256 key (ES256)")
    numbers = public.public_numbers()
    jwk = {
        "kty": "EC",
        "crv": "P-256",
        "x": b64url(numbers.x.to_bytes(_P256_COORDINATE_BYTES, "big")),
        "y": b64url(numbers.y.to_bytes(_P256_COORDINATE_BYTES, "big")),
    }
    return {**jwk, "kid": jwk_thumbprint(jwk), "alg": APP_ACCESS_ALG, "use": "sig"}


def key_id(key: ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) -> str:
    """The ``kid`` of a backend key: the RFC 7638 thumbprint of its public JWK."""
    return public_jwk(key)["kid"]


def mint_app_token(
    private_key: ec.EllipticCurvePrivateKey,
    *,
    backend_id: str,
    user_id: str,
    app_id: str,
    permissions: Iterable[str] = (),
    ttl: timedelta = MAX_APP_TOKEN_TTL,
    clock: Clock | None = None,
    jti: str | None = None,
) -> str:
    """Sign a User App Access Token for ``user_id`` of ``backend_id``, to open ``app_id``.

    ES256 with header ``kid`` = :func:`key_id` of the key; claims ``iss`` = ``backend_id``,
    ``sub`` = ``user_id``, ``aud`` = ``app_id``, ``typ`` ``app-access``, ``permissions``,
    ``jti`` (random unless given), ``iat`` and ``exp`` = ``iat`` + ``ttl``. ``ttl`` must be
    positive and at most 30 minutes; the time comes from ``clock``.
    """
    if not isinstance(private_key, ec.EllipticCurvePrivateKey) or not isinstance(
        private_key.curve, ec.SECP256R1
    ):
        raise ValueError("a User App Access Token is signed with an EC P-256 private key")
    if not is_valid_id(backend_id):
        raise ValueError(f"{backend_id!r} is not a valid backend id")
    if not is_valid_id(app_id):
        raise ValueError(f"{app_id!r} is not a valid app id")
    if not isinstance(user_id, str) or not user_id:
        raise ValueError("user_id must be a non-empty string")
    granted = list(permissions)
    if isinstance(permissions, str) or not all(isinstance(p, str) for p in granted):
        raise ValueError("permissions must be an iterable of strings")
    if not timedelta(0) < ttl <= MAX_APP_TOKEN_TTL:
        raise ValueError(f"ttl must be positive and at most {MAX_APP_TOKEN_TTL}")
    issued_at = int((clock or SystemClock()).now().timestamp())
    claims: dict[str, Any] = {
        "iss": backend_id,
        "sub": user_id,
        "aud": app_id,
        "typ": APP_ACCESS_TYP,
        "permissions": granted,
        "jti": jti or secrets.token_urlsafe(16),
        "iat": issued_at,
        "exp": issued_at + int(ttl.total_seconds()),
    }
    return jwt.encode(
        claims,
        private_key,
        algorithm=APP_ACCESS_ALG,
        headers={"kid": key_id(private_key), "typ": "JWT"},
    )
