"""JWTs the server signs and the access tokens it verifies (explicit algorithm, own keys only)."""

from __future__ import annotations

import hashlib
import secrets
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import jwt

from agent.protocol import (
    ACCESS_TOKEN_ALG,
    ACCESS_TOKEN_AUDIENCE,
    KEY_PURPOSE_AUTH,
    LEASE_ALG,
    LEASE_AUDIENCE,
)

from .errors import TokenExpired, TokenInvalid
from .keys import KeyStore

#: Leeway for the server's own checks; well inside DESIGN.md's 60 s ceiling.
LEEWAY_SECONDS = 30
#: Access tokens whose signature was checked, remembered by their exact text.
_VERIFIED_CACHE_SIZE = 8192


@dataclass(frozen=True)
class AccessClaims:
    user_id: str
    device: str
    session_id: str
    scope: str
    jti: str
    exp: int


def fingerprint_hash(fingerprint: str) -> str:
    """The ``device`` claim: a hash of the fingerprint, never the fingerprint itself."""
    return hashlib.sha256(fingerprint.encode("utf-8")).hexdigest()


def opaque_token() -> str:
    return secrets.token_urlsafe(32)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class _Verified:
    claims: AccessClaims
    kid: str
    times: dict[str, Any]


class TokenService:
    def __init__(self, keys: KeyStore, issuer: str) -> None:
        self._keys = keys
        self._issuer = issuer
        # An RS256 check costs ~0.2 ms, and a client sends the same token for 15 minutes. The
        # same bytes need no second check of their signature; the times and the key's
        # publication are checked again on every use.
        self._verified: dict[str, _Verified] = {}
        self._verified_lock = threading.Lock()

    def _sign(self, claims: dict[str, Any], alg: str) -> str:
        key = self._keys.signing_key(KEY_PURPOSE_AUTH)
        return jwt.encode(
            claims, key.private_key, algorithm=alg, headers={"kid": key.kid, "typ": "JWT"}
        )

    def issue_access_token(
        self, *, user_id: str, device: str, session_id: str, now: datetime, ttl: timedelta
    ) -> tuple[str, int]:
        exp = int((now + ttl).timestamp())
        claims = {
            "iss": self._issuer,
            "aud": ACCESS_TOKEN_AUDIENCE,
            "sub": user_id,
            "device": device,
            "sid": session_id,
            "scope": "license usage",
            "jti": secrets.token_hex(16),
            "iat": int(now.timestamp()),
            "nbf": int(now.timestamp()),
            "exp": exp,
        }
        return self._sign(claims, ACCESS_TOKEN_ALG), exp

    def issue_lease(self, claims: dict[str, Any], *, now: datetime, ttl: timedelta) -> str:
        body = {
            **claims,
            "iss": self._issuer,
            "aud": LEASE_AUDIENCE,
            "iat": int(now.timestamp()),
            "nbf": int(now.timestamp()),
            "exp": int((now + ttl).timestamp()),
        }
        return self._sign(body, LEASE_ALG)

    def verify_access_token(self, token: str, *, now: datetime) -> AccessClaims:
        known = self._verified.get(token)
        if known is not None and self._keys.by_kid(known.kid, KEY_PURPOSE_AUTH) is not None:
            check_times(known.times, now, what="access token")
            return known.claims
        claims, kid, times = self._verify_access_token(token, now)
        with self._verified_lock:
            if len(self._verified) >= _VERIFIED_CACHE_SIZE:
                del self._verified[next(iter(self._verified))]  # the oldest first
            self._verified[token] = _Verified(claims, kid, times)
        return claims

    def _verify_access_token(
        self, token: str, now: datetime
    ) -> tuple[AccessClaims, str, dict[str, Any]]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError as exc:
            raise TokenInvalid("the access token is malformed") from exc
        if header.get("alg") != ACCESS_TOKEN_ALG:
            raise TokenInvalid("the access token is not RS256-signed")
        kid = header.get("kid")
        key = self._keys.by_kid(kid, KEY_PURPOSE_AUTH) if isinstance(kid, str) else None
        if key is None:
            raise TokenInvalid("the access token was not signed by a key of this server")
        try:
            # PyJWT would check the times against the wall clock; the injected clock decides.
            claims = jwt.decode(
                token,
                key.public_key,
                algorithms=[ACCESS_TOKEN_ALG],
                audience=ACCESS_TOKEN_AUDIENCE,
                issuer=self._issuer,
                options={
                    "require": ["exp", "nbf", "iat", "iss", "aud", "sub", "jti", "sid"],
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                },
            )
        except jwt.InvalidTokenError as exc:
            raise TokenInvalid(f"the access token is invalid: {exc}") from exc
        check_times(claims, now, what="access token")
        try:
            verified = AccessClaims(
                user_id=str(claims["sub"]),
                device=str(claims["device"]),
                session_id=str(claims["sid"]),
                scope=str(claims.get("scope", "")),
                jti=str(claims["jti"]),
                exp=int(claims["exp"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise TokenInvalid("the access token lacks required claims") from exc
        times = {k: claims[k] for k in ("exp", "nbf", "iat")}
        return verified, key.kid, times


def check_times(claims: dict[str, Any], now: datetime, *, what: str) -> None:
    """Check ``exp``, ``nbf`` and ``iat`` against ``now`` with the server's leeway."""
    t = now.timestamp()
    try:
        exp, nbf, iat = (float(claims[k]) for k in ("exp", "nbf", "iat"))
    except (KeyError, TypeError, ValueError) as exc:
        raise TokenInvalid(f"the {what} has malformed time claims") from exc
    if t > exp + LEEWAY_SECONDS:
        raise TokenExpired(f"the {what} has expired")
    if t < nbf - LEEWAY_SECONDS:
        raise TokenInvalid(f"the {what} is not valid yet")
    if iat > t + LEEWAY_SECONDS:
        raise TokenInvalid(f"the {what} was issued in the future")
