"""The marketplace's own JWTs: Backend Admin and User Tokens (RS256), entitlement snapshots (ES256).

Every token type has its own ``aud`` and ``typ`` (docs/marketplace.md, "Tokens"), and a verifier
accepts exactly one type. A token this server signed but of another type (an access token, a
lease, the other backend token) is told apart from one it did not sign: the first is ``forbidden``
(403), the second ``token_invalid`` (401), so that a client learns it used the wrong token rather
than a broken one.
"""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from typing import Any

import jwt

from agent.protocol import (
    ACCESS_TOKEN_AUDIENCE,
    BACKEND_ADMIN_TOKEN_TTL_SECONDS,
    BACKEND_USER_TOKEN_TTL_SECONDS,
    ENTITLEMENTS_ALG,
    ENTITLEMENTS_AUDIENCE,
    ENTITLEMENTS_TTL_SECONDS,
    ENTITLEMENTS_TYP,
    KEY_PURPOSE_AUTH,
    KEY_PURPOSE_LICENSE,
    LEASE_AUDIENCE,
    MARKETPLACE_ADMIN_ALG,
    MARKETPLACE_ADMIN_AUDIENCE,
    MARKETPLACE_ADMIN_SCOPE,
    MARKETPLACE_ADMIN_TYP,
    MARKETPLACE_USER_ALG,
    MARKETPLACE_USER_AUDIENCE,
    MARKETPLACE_USER_SCOPE,
    MARKETPLACE_USER_TYP,
)

from .errors import Forbidden, TokenInvalid
from .keys import KeyStore, SigningKey
from .tokens import LEEWAY_SECONDS, check_times

# The callback token (docs/marketplace.md, "Install/uninstall callbacks"). They belong in
# agent.protocol with the other marketplace constants once the app side verifies callbacks.
CALLBACK_TYP = "marketplace-callback"
CALLBACK_ALG = "ES256"
CALLBACK_TTL_SECONDS = 5 * 60


@dataclass(frozen=True)
class _Kind:
    name: str
    alg: str
    audience: str
    typ: str
    scope: str
    ttl: timedelta


class BackendTokenKind(Enum):
    ADMIN = _Kind(
        "Backend Admin Token",
        MARKETPLACE_ADMIN_ALG,
        MARKETPLACE_ADMIN_AUDIENCE,
        MARKETPLACE_ADMIN_TYP,
        MARKETPLACE_ADMIN_SCOPE,
        timedelta(seconds=BACKEND_ADMIN_TOKEN_TTL_SECONDS),
    )
    USER = _Kind(
        "Backend User Token",
        MARKETPLACE_USER_ALG,
        MARKETPLACE_USER_AUDIENCE,
        MARKETPLACE_USER_TYP,
        MARKETPLACE_USER_SCOPE,
        timedelta(seconds=BACKEND_USER_TOKEN_TTL_SECONDS),
    )


#: The audiences of every token the ``auth`` key signs, and what to call each in an error.
_OWN_AUDIENCES = {
    ACCESS_TOKEN_AUDIENCE: "an access token",
    LEASE_AUDIENCE: "a license lease",
    MARKETPLACE_ADMIN_AUDIENCE: "a Backend Admin Token",
    MARKETPLACE_USER_AUDIENCE: "a Backend User Token",
}


_KIND_BY_AUDIENCE = {kind.value.audience: kind for kind in BackendTokenKind}


@dataclass(frozen=True)
class BackendClaims:
    backend_id: str
    jti: str
    exp: int


@dataclass(frozen=True)
class IssuedBackendToken:
    token: str
    jti: str
    exp: int


_VERIFIED_CACHE_SIZE = 4096


@dataclass(frozen=True, slots=True)
class _Verified:
    claims: BackendClaims
    kid: str
    times: dict[str, Any]


class MarketplaceTokens:
    def __init__(self, keys: KeyStore, issuer: str) -> None:
        self._keys = keys
        self._issuer = issuer
        # As for access tokens (tokens.py): the same bytes need no second signature check. The
        # times and whether the key is still trusted are checked again on every use; only
        # tokens that passed every check are remembered, per kind.
        self._verified: dict[tuple[str, BackendTokenKind], _Verified] = {}
        self._verified_lock = threading.Lock()

    # --- Backend Admin and User Tokens ----------------------------------------------------------

    def issue(
        self, kind: BackendTokenKind, backend_id: str, *, now: datetime
    ) -> IssuedBackendToken:
        spec = kind.value
        jti = secrets.token_hex(16)
        iat = int(now.timestamp())
        exp = int((now + spec.ttl).timestamp())
        claims = {
            "iss": self._issuer,
            "aud": spec.audience,
            "typ": spec.typ,
            "sub": backend_id,
            "scope": spec.scope,
            "jti": jti,
            "iat": iat,
            "nbf": iat,
            "exp": exp,
        }
        key = self._keys.signing_key(KEY_PURPOSE_AUTH)
        token = jwt.encode(
            claims, key.private_key, algorithm=spec.alg, headers={"kid": key.kid, "typ": "JWT"}
        )
        return IssuedBackendToken(token=token, jti=jti, exp=exp)

    def verify(self, token: str, kind: BackendTokenKind, *, now: datetime) -> BackendClaims:
        """Check a Backend Admin or User Token's signature, times and type (no database).

        Raises ``TokenInvalid`` for anything this server did not sign (or that is malformed),
        ``TokenExpired`` past ``exp``, and ``Forbidden`` for a token of another type.
        """
        spec = kind.value
        known = self._verified.get((token, kind))
        if known is not None and self._trusted_auth_key(known.kid, spec.ttl, now) is not None:
            check_times(known.times, now, what=spec.name)
            return known.claims
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError as exc:
            raise TokenInvalid(f"the {spec.name} is malformed") from exc
        if header.get("alg") != spec.alg:
            raise TokenInvalid(f"a {spec.name} is {spec.alg}-signed by this marketplace")
        kid = header.get("kid")
        key = self._trusted_auth_key(kid, spec.ttl, now) if isinstance(kid, str) else None
        if key is None:
            raise TokenInvalid(f"the {spec.name} was not signed by a key of this marketplace")
        try:
            # Times are checked against the injected clock below; the audience by hand, so
            # that this server's other token types can be told apart from forgeries.
            claims: dict[str, Any] = jwt.decode(
                token,
                key.public_key,
                algorithms=[spec.alg],
                issuer=self._issuer,
                options={
                    "require": ["exp", "iat", "iss", "aud"],
                    "verify_aud": False,
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                },
            )
        except jwt.InvalidTokenError as exc:
            raise TokenInvalid(f"the {spec.name} is invalid: {exc}") from exc
        claims.setdefault("nbf", claims["iat"])
        check_times(claims, now, what=spec.name)
        audience = claims["aud"]
        if audience != spec.audience:
            other = _OWN_AUDIENCES.get(audience) if isinstance(audience, str) else None
            if other is None:
                raise TokenInvalid(f"the token is not a {spec.name}")
            raise Forbidden(f"this endpoint takes a {spec.name}, not {other}")
        if claims.get("typ") != spec.typ or claims.get("scope") != spec.scope:
            raise TokenInvalid(f"the {spec.name} has the wrong type or scope")
        backend_id, jti = claims.get("sub"), claims.get("jti")
        if not isinstance(backend_id, str) or not backend_id or not isinstance(jti, str):
            raise TokenInvalid(f"the {spec.name} lacks its backend or id")
        verified = BackendClaims(backend_id=backend_id, jti=jti, exp=int(claims["exp"]))
        times = {k: claims[k] for k in ("iat", "nbf", "exp")}
        with self._verified_lock:
            if len(self._verified) >= _VERIFIED_CACHE_SIZE:
                del self._verified[next(iter(self._verified))]  # the oldest first
            self._verified[(token, kind)] = _Verified(verified, key.kid, times)
        return verified

    def verify_either(self, token: str, *, now: datetime) -> BackendClaims:
        """Check a Backend Admin or a Backend User Token, whichever its audience says it is.

        The unverified audience only picks which of the two checks runs; that check decides.
        """
        try:
            audience = jwt.decode(token, options={"verify_signature": False}).get("aud")
        except jwt.InvalidTokenError as exc:
            raise TokenInvalid("the token is malformed") from exc
        kind = _KIND_BY_AUDIENCE.get(audience) if isinstance(audience, str) else None
        if kind is None:
            raise TokenInvalid("the token is not a Backend Admin or User Token")
        return self.verify(token, kind, now=now)

    def _trusted_auth_key(self, kid: str, ttl: timedelta, now: datetime) -> SigningKey | None:
        # Only the marketplace verifies these tokens, so what counts is not whether the key is
        # still in the public JWKS (72 h after a rotation) but whether a token of this type that
        # it signed before it was retired can still be valid. A Backend Admin Token thus
        # outlives a routine rotation of the auth key, as its 365 days promise.
        for key in self._keys.all_keys():
            if key.kid != kid or key.purpose != KEY_PURPOSE_AUTH:
                continue
            if key.retired_at is None:
                return key
            if now < key.retired_at + ttl + timedelta(seconds=LEEWAY_SECONDS):
                return key
        return None

    # --- entitlement snapshots ------------------------------------------------------------------

    def sign_entitlements(
        self, app_id: str, backends: list[str], *, now: datetime
    ) -> tuple[str, int]:
        """An ES256 entitlement snapshot of ``app_id``, signed by the ``license`` key."""
        iat = int(now.timestamp())
        exp = iat + ENTITLEMENTS_TTL_SECONDS
        claims = {
            "iss": self._issuer,
            "aud": ENTITLEMENTS_AUDIENCE,
            "typ": ENTITLEMENTS_TYP,
            "app_id": app_id,
            "backends": sorted(backends),
            "iat": iat,
            "nbf": iat,
            "exp": exp,
        }
        key = self._keys.signing_key(KEY_PURPOSE_LICENSE)
        jws = jwt.encode(
            claims, key.private_key, algorithm=ENTITLEMENTS_ALG, headers={"kid": key.kid}
        )
        return jws, exp

    # --- install/uninstall callbacks ------------------------------------------------------------

    def sign_callback(
        self,
        *,
        event_id: str,
        event: str,
        backend_id: str,
        app_id: str,
        occurred_at: datetime,
        now: datetime,
    ) -> str:
        """The token a callback carries: ES256 by the ``license`` key, ``aud`` the app's id.

        ``jti`` is the event id, the same on every attempt, so that the app can drop repeats.
        """
        iat = int(now.timestamp())
        claims = {
            "iss": self._issuer,
            "aud": app_id,
            "typ": CALLBACK_TYP,
            "event_id": event_id,
            "event": event,
            "backend_id": backend_id,
            "app_id": app_id,
            "occurred_at": int(occurred_at.timestamp()),
            "jti": event_id,
            "iat": iat,
            "nbf": iat,
            "exp": iat + CALLBACK_TTL_SECONDS,
        }
        key = self._keys.signing_key(KEY_PURPOSE_LICENSE)
        return jwt.encode(claims, key.private_key, algorithm=CALLBACK_ALG, headers={"kid": key.kid})
