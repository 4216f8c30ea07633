"""Verification of the tokens the server signs for the agent: access tokens and license leases.

Rules (DESIGN.md, "Keys and pinning" and "Tokens"):

- each token type names its one algorithm (``RS256`` for both); ``alg: none``, ``HS*`` and any
  other algorithm are refused before a key is even looked up;
- the key is the pinned key named by the header's ``kid`` (:class:`agent.key_pins.PinnedKeySet`)
  and must be a key published for that algorithm; ``jku``, ``x5u``, ``jwk`` and ``x5c`` headers
  are ignored and never fetched, and a ``crit`` header is refused;
- ``iss`` must be the configured issuer, ``aud`` exactly the audience of the token type (so a
  lease never passes as an access token, nor the reverse);
- ``exp``, ``nbf`` and ``iat`` are checked against the injected clock with a leeway of 30 s
  (never more than :data:`agent.protocol.MAX_LEEWAY_SECONDS`); every claim the agent relies on
  is required;
- a lease is refused when its ``device`` is not the expected device hash.

Failures raise subclasses of :class:`agent.errors.TokenRejected`.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import httpx
import jwt

from agent.clock import Clock, SystemClock
from agent.errors import DeviceMismatch, TokenExpired, TokenInvalid
from agent.key_pins import PinnedKey, PinnedKeySet
from agent.protocol import (
    ACCESS_TOKEN_ALG,
    ACCESS_TOKEN_AUDIENCE,
    LEASE_ALG,
    LEASE_AUDIENCE,
    MAX_LEEWAY_SECONDS,
    LicenseStatus,
)

log = logging.getLogger("tgflow.agent.tokens")

#: Issuer the reference backend writes into every token (its ``TGFLOW_ISSUER`` default).
DEFAULT_ISSUER: Final = "tgflow"
#: Clock leeway for ``exp``/``nbf``/``iat``; well inside the 60 s ceiling.
DEFAULT_LEEWAY_SECONDS: Final = 30
#: A longer string is refused unparsed (real tokens are well under 2 KiB).
MAX_TOKEN_CHARS: Final = 16 * 1024
#: Headers that could point the verifier at a key of the sender's choosing; never used.
IGNORED_KEY_HEADERS: Final = frozenset({"jku", "x5u", "jwk", "x5c"})


@dataclass(frozen=True)
class _TokenType:
    name: str
    alg: str
    audience: str
    required: tuple[str, ...]


_ACCESS = _TokenType(
    name="access token",
    alg=ACCESS_TOKEN_ALG,
    audience=ACCESS_TOKEN_AUDIENCE,
    required=("iss", "aud", "sub", "exp", "nbf", "iat", "jti", "device"),
)
_LEASE = _TokenType(
    name="license lease",
    alg=LEASE_ALG,
    audience=LEASE_AUDIENCE,
    required=(
        "iss",
        "aud",
        "sub",
        "exp",
        "nbf",
        "iat",
        "device",
        "status",
        "quota",
        "features",
    ),
)


@dataclass(frozen=True)
class AccessTokenClaims:
    """The verified claims of an access token."""

    subject: str
    device: str
    jti: str
    scope: str
    session_id: str | None
    issued_at: datetime
    expires_at: datetime
    kid: str
    claims: Mapping[str, Any] = field(repr=False)


@dataclass(frozen=True)
class LeaseClaims:
    """The verified claims of a license lease (what the agent may rely on while offline)."""

    subject: str
    device: str
    plan: str | None
    status: str
    quota_limit: int
    period_end: datetime | None
    features: tuple[str, ...]
    issued_at: datetime
    expires_at: datetime
    kid: str
    claims: Mapping[str, Any] = field(repr=False)

    @property
    def active(self) -> bool:
        """Whether the lease says the license is active."""
        return self.status == LicenseStatus.ACTIVE


def device_claim(fingerprint: str) -> str:
    """The ``device`` claim the server writes for ``fingerprint``: its SHA-256, in hex.

    Pass it as ``device=`` to :meth:`TokenVerifier.verify_lease`; the fingerprint itself never
    appears in a token.
    """
    return hashlib.sha256(fingerprint.encode("utf-8")).hexdigest()


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _when(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


class TokenVerifier:
    """Verifies access tokens and leases against the pinned keys and the injected clock."""

    def __init__(
        self,
        keys: PinnedKeySet,
        *,
        issuer: str = DEFAULT_ISSUER,
        clock: Clock | None = None,
        leeway_seconds: int = DEFAULT_LEEWAY_SECONDS,
    ) -> None:
        """Verify with ``keys``; ``leeway_seconds`` must lie within 0..MAX_LEEWAY_SECONDS."""
        if not 0 <= leeway_seconds <= MAX_LEEWAY_SECONDS:
            raise ValueError(f"leeway must be between 0 and {MAX_LEEWAY_SECONDS} seconds")
        self.keys = keys
        self.issuer = issuer
        self.leeway_seconds = leeway_seconds
        self._clock: Clock = clock or SystemClock()

    # --- access tokens --------------------------------------------------------------------------

    def verify_access_token(
        self, token: str, *, device: str | None = None, client: httpx.Client | None = None
    ) -> AccessTokenClaims:
        """Verify an access token; with ``device``, also require that device hash.

        Only keys already known are used, unless ``client`` is given: then an unknown ``kid``
        may trigger one (rate-limited) JWKS refetch through it.
        """
        kid = self._check_header(token, _ACCESS)
        key = self.keys.resolve_sync(kid, client) if client is not None else self.keys.key(kid)
        return self._access_claims(token, key, device)

    async def verify_access_token_async(
        self, token: str, client: httpx.AsyncClient, *, device: str | None = None
    ) -> AccessTokenClaims:
        """Verify an access token, refetching the JWKS through ``client`` for an unknown kid."""
        kid = self._check_header(token, _ACCESS)
        key = await self.keys.resolve(kid, client)
        return self._access_claims(token, key, device)

    def _access_claims(self, token: str, key: PinnedKey, device: str | None) -> AccessTokenClaims:
        claims = self._decode(token, key, _ACCESS)
        sub, dev, jti = claims["sub"], claims["device"], claims["jti"]
        scope, sid = claims.get("scope", ""), claims.get("sid")
        if not all(isinstance(v, str) for v in (sub, dev, jti, scope)) or not (
            sid is None or isinstance(sid, str)
        ):
            raise TokenInvalid("the access token has malformed claims")
        if device is not None and not hmac.compare_digest(dev, device):
            raise DeviceMismatch("the access token was issued for another device")
        return AccessTokenClaims(
            subject=sub,
            device=dev,
            jti=jti,
            scope=scope,
            session_id=sid,
            issued_at=_when(claims["iat"]),
            expires_at=_when(claims["exp"]),
            kid=key.kid,
            claims=claims,
        )

    # --- leases ---------------------------------------------------------------------------------

    def verify_lease(
        self, token: str, *, device: str, client: httpx.Client | None = None
    ) -> LeaseClaims:
        """Verify a license lease issued for ``device`` (the device hash the server binds).

        Offline by default: only keys already known are used, unless ``client`` is given (see
        :meth:`verify_access_token`). A genuine lease for another device raises
        :class:`DeviceMismatch`.
        """
        kid = self._check_header(token, _LEASE)
        key = self.keys.resolve_sync(kid, client) if client is not None else self.keys.key(kid)
        return self._lease_claims(token, key, device)

    async def verify_lease_async(
        self, token: str, client: httpx.AsyncClient, *, device: str
    ) -> LeaseClaims:
        """Verify a lease, refetching the JWKS through ``client`` for an unknown kid."""
        kid = self._check_header(token, _LEASE)
        key = await self.keys.resolve(kid, client)
        return self._lease_claims(token, key, device)

    def _lease_claims(self, token: str, key: PinnedKey, device: str) -> LeaseClaims:
        claims = self._decode(token, key, _LEASE)
        # ``plan`` is null for an inactive license; PyJWT's ``require`` would call that missing.
        if "plan" not in claims:
            raise TokenInvalid("the license lease lacks the plan claim")
        sub, dev, status, plan = claims["sub"], claims["device"], claims["status"], claims["plan"]
        quota, features = claims["quota"], claims["features"]
        limit = quota.get("limit") if isinstance(quota, Mapping) else None
        period_end = quota.get("period_end") if isinstance(quota, Mapping) else None
        if not isinstance(limit, int) or isinstance(limit, bool):
            raise TokenInvalid("the license lease has a malformed quota")
        well_formed = (
            isinstance(sub, str)
            and isinstance(dev, str)
            and isinstance(status, str)
            and (plan is None or isinstance(plan, str))
            and (period_end is None or _is_number(period_end))
            and isinstance(features, list)
            and all(isinstance(f, str) for f in features)
        )
        if not well_formed:
            raise TokenInvalid("the license lease has malformed claims")
        if not hmac.compare_digest(dev, device):
            raise DeviceMismatch("the license lease was issued for another device")
        return LeaseClaims(
            subject=sub,
            device=dev,
            plan=plan,
            status=status,
            quota_limit=limit,
            period_end=_when(period_end) if period_end is not None else None,
            features=tuple(features),
            issued_at=_when(claims["iat"]),
            expires_at=_when(claims["exp"]),
            kid=key.kid,
            claims=claims,
        )

    # --- shared steps ---------------------------------------------------------------------------

    def _check_header(self, token: str, kind: _TokenType) -> str:
        """Refuse what must never reach a key lookup; return the ``kid``."""
        if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_CHARS:
            raise TokenInvalid(f"the {kind.name} is empty, too long or not a string")
        if token.count(".") != 2:
            raise TokenInvalid(f"the {kind.name} is not a compact JWS")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError as exc:
            raise TokenInvalid(f"the {kind.name} is malformed: {exc}") from exc
        alg = header.get("alg")
        if alg != kind.alg:
            raise TokenInvalid(f"the {kind.name} must be signed with {kind.alg}, not {alg!r}")
        if "crit" in header or "b64" in header:
            raise TokenInvalid(f"the {kind.name} carries header extensions the agent refuses")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise TokenInvalid(f"the {kind.name} names no signing key (kid)")
        ignored = IGNORED_KEY_HEADERS & header.keys()
        if ignored:
            log.info("ignoring key-location headers %s in a %s", sorted(ignored), kind.name)
        return kid

    def _decode(self, token: str, key: PinnedKey, kind: _TokenType) -> dict[str, Any]:
        if key.alg != kind.alg:
            raise TokenInvalid(
                f"the {kind.name} names key {key.kid}, which signs {key.alg}, not {kind.alg}"
            )
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.public_key,
                algorithms=[kind.alg],
                audience=kind.audience,
                issuer=self.issuer,
                options={
                    "require": list(kind.required),
                    "strict_aud": True,
                    # PyJWT would read the wall clock; the injected clock decides below.
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                },
            )
        except jwt.InvalidTokenError as exc:
            raise TokenInvalid(f"the {kind.name} is invalid: {exc}") from exc
        self._check_times(claims, kind)
        return claims

    def _check_times(self, claims: Mapping[str, Any], kind: _TokenType) -> None:
        exp, nbf, iat = claims["exp"], claims["nbf"], claims["iat"]
        if not (_is_number(exp) and _is_number(nbf) and _is_number(iat)):
            raise TokenInvalid(f"the {kind.name} has malformed time claims")
        now = self._clock.now().timestamp()
        leeway = self.leeway_seconds
        if now > exp + leeway:
            raise TokenExpired(f"the {kind.name} expired at {_when(exp).isoformat()}")
        if now < nbf - leeway:
            raise TokenInvalid(f"the {kind.name} is not valid before {_when(nbf).isoformat()}")
        if iat > now + leeway:
            raise TokenInvalid(f"the {kind.name} was issued in the future")
