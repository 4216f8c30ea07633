"""The steps every compact JWS of the marketplace goes through before and after its signature.

Shared by the User App Access Token (:mod:`agent.marketplace.verifier`) and the entitlement
snapshot (:mod:`agent.marketplace.entitlements`): the header that must never reach a key lookup
(algorithm, ``kid``, key-location headers), the time claims against the injected clock, and the
unverified issuer used only to pick the issuing backend's keys.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

import jwt

from agent.marketplace.errors import AppTokenExpired, AppTokenInvalid, SnapshotInvalid

#: A longer token is refused unparsed (a real one is well under 1 KiB).
MAX_TOKEN_CHARS: Final = 8 * 1024
#: Headers that would let the sender choose the key; a token carrying one is refused.
REFUSED_KEY_HEADERS: Final = frozenset({"jku", "x5u", "jwk", "x5c"})

#: What the error messages call the two kinds of token.
APP_TOKEN_NAME: Final = "app access token"
SNAPSHOT_NAME: Final = "entitlement snapshot"


def unverified_issuer(token: str) -> object:
    """The ``iss`` of a compact JWS's payload, read without verifying anything (one parse)."""
    segment = token.split(".")[1]
    try:
        payload = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (ValueError, binascii.Error) as exc:
        raise AppTokenInvalid(f"the {APP_TOKEN_NAME} is malformed: {exc}") from exc
    return payload.get("iss") if isinstance(payload, dict) else None


def check_header(
    token: str,
    name: str,
    alg: str,
    error: type[AppTokenInvalid] | type[SnapshotInvalid],
    *,
    require_kid: bool = True,
) -> str:
    """Refuse a token whose header must never reach a key lookup; return its ``kid``."""
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_CHARS:
        raise error(f"the {name} is empty, too long or not a string")
    if token.count(".") != 2:
        raise error(f"the {name} is not a compact JWS")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.InvalidTokenError as exc:
        raise error(f"the {name} is malformed: {exc}") from exc
    if header.get("alg") != alg:
        raise error(f"the {name} must be signed with {alg}, not {header.get('alg')!r}")
    if "crit" in header or "b64" in header:
        raise error(f"the {name} carries header extensions that are refused")
    pointers = REFUSED_KEY_HEADERS & header.keys()
    if pointers:
        # The key comes from the issuer's registered keys only, never from the token itself.
        raise error(f"the {name} carries key-location headers {sorted(pointers)}")
    kid = header.get("kid")
    if kid is None and not require_kid:
        return ""  # the caller decides whether it needs one
    if not isinstance(kid, str) or not kid:
        raise error(f"the {name} names no signing key (kid)")
    return kid


def check_times(
    claims: Mapping[str, Any],
    name: str,
    now: datetime,
    leeway: int,
    invalid: type[AppTokenInvalid] | type[SnapshotInvalid],
    expired: type[AppTokenExpired] | type[SnapshotInvalid],
) -> tuple[float, float]:
    """Check ``exp``, ``iat`` and (when present) ``nbf`` at ``now``; return ``(exp, iat)``."""
    exp, iat, nbf = claims["exp"], claims["iat"], claims.get("nbf", claims["iat"])
    if not (_is_number(exp) and _is_number(iat) and _is_number(nbf)):
        raise invalid(f"the {name} has malformed time claims")
    t = now.timestamp()
    if t > exp + leeway:
        raise expired(f"the {name} expired at {utc_from_timestamp(exp).isoformat()}")
    if iat > t + leeway:
        raise invalid(f"the {name} was issued in the future")
    if t < nbf - leeway:
        raise invalid(f"the {name} is not valid before {utc_from_timestamp(nbf).isoformat()}")
    if exp <= iat:
        raise invalid(f"the {name} expires before it was issued")
    return float(exp), float(iat)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def utc_from_timestamp(seconds: float) -> datetime:
    """A JWT time claim (seconds since the epoch) as an aware UTC datetime."""
    return datetime.fromtimestamp(seconds, UTC)
