"""Staff access tokens: RS256 with the ``auth`` key, ``aud`` tgflow-staff, ``typ`` staff-access.

A token of any other type this server signs (an end user's access token, a lease, a marketplace
token) fails here on its ``aud``; a staff token fails every other verifier the same way.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import jwt

from agent.protocol import (
    KEY_PURPOSE_AUTH,
    STAFF_TOKEN_ALG,
    STAFF_TOKEN_AUDIENCE,
    STAFF_TOKEN_TTL_SECONDS,
    STAFF_TOKEN_TYP,
)

from .errors import TokenInvalid
from .keys import KeyStore
from .tokens import check_times


@dataclass(frozen=True)
class StaffClaims:
    staff_id: str
    session_id: str
    roles: tuple[str, ...]
    amr: tuple[str, ...]
    jti: str
    exp: int


class StaffTokens:
    def __init__(self, keys: KeyStore, issuer: str) -> None:
        self._keys = keys
        self._issuer = issuer

    def issue(
        self, *, staff_id: str, role: str, session_id: str, amr: list[str], now: datetime
    ) -> tuple[str, int]:
        exp = int((now + timedelta(seconds=STAFF_TOKEN_TTL_SECONDS)).timestamp())
        claims = {
            "iss": self._issuer,
            "aud": STAFF_TOKEN_AUDIENCE,
            "typ": STAFF_TOKEN_TYP,
            "sub": staff_id,
            "sid": session_id,
            "roles": [role],
            "amr": amr,
            "jti": secrets.token_hex(16),
            "iat": int(now.timestamp()),
            "nbf": int(now.timestamp()),
            "exp": exp,
        }
        key = self._keys.signing_key(KEY_PURPOSE_AUTH)
        token = jwt.encode(
            claims, key.private_key, algorithm=STAFF_TOKEN_ALG, headers={"kid": key.kid}
        )
        return token, exp

    def verify(self, token: str, *, now: datetime) -> StaffClaims:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError as exc:
            raise TokenInvalid("the staff token is malformed") from exc
        kid = header.get("kid")
        key = self._keys.by_kid(kid, KEY_PURPOSE_AUTH) if isinstance(kid, str) else None
        if header.get("alg") != STAFF_TOKEN_ALG or key is None:
            raise TokenInvalid("the staff token was not signed by this server's auth key")
        try:
            claims = jwt.decode(
                token,
                key.public_key,
                algorithms=[STAFF_TOKEN_ALG],
                audience=STAFF_TOKEN_AUDIENCE,
                issuer=self._issuer,
                options={
                    "require": ["exp", "nbf", "iat", "iss", "aud", "sub", "jti", "sid", "typ"],
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                },
            )
        except jwt.InvalidTokenError as exc:
            raise TokenInvalid("this is not a staff token of this server") from exc
        if claims.get("typ") != STAFF_TOKEN_TYP:
            raise TokenInvalid("this is not a staff access token")
        check_times(claims, now, what="staff token")
        try:
            return StaffClaims(
                staff_id=str(claims["sub"]),
                session_id=str(claims["sid"]),
                roles=tuple(str(r) for r in claims.get("roles", [])),
                amr=tuple(str(a) for a in claims.get("amr", [])),
                jti=str(claims["jti"]),
                exp=int(claims["exp"]),
            )
        except (TypeError, ValueError) as exc:
            raise TokenInvalid("the staff token lacks required claims") from exc
