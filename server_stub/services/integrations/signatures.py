"""Request signing of the integration API (``/external``): HMAC-SHA256, Stripe-style.

The caller sends ``X-TGFlow-Timestamp: <unix seconds>`` and
``X-TGFlow-Signature: v1=<hex>``, the HMAC-SHA256 under a shared secret of the bytes

    ``{timestamp}.{METHOD}.{target}.{raw body}``

where ``target`` is the path and, when there is one, ``?`` and the query string, exactly as sent
(percent-encoding untouched). Every configured secret is tried (rotation) and compared in constant
time; a timestamp more than :data:`TOLERANCE_SECONDS` away from the server's clock, either way,
is refused. Without a configured secret nothing is accepted (fail closed). docs/licensing.md,
"Integrations", is the caller's description.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from ...errors import ServiceUnavailable, TokenInvalid

TIMESTAMP_HEADER = "X-TGFlow-Timestamp"
SIGNATURE_HEADER = "X-TGFlow-Signature"
SCHEME = "v1"
TOLERANCE_SECONDS = 300
#: A signature header longer than this, or with more entries, is refused unread.
_MAX_HEADER = 1024
_MAX_ENTRIES = 8
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_HEX_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class SignedRequest:
    """What the signature covers, as the server received it."""

    method: str
    #: The request target: raw path, plus ``?`` and the raw query when present.
    target: bytes
    body: bytes
    timestamp: str | None
    signature: str | None


def signed_bytes(timestamp: str, method: str, target: bytes, body: bytes) -> bytes:
    """The message the HMAC is computed over (also what a caller signs: tests/helpers)."""
    return f"{timestamp}.{method.upper()}.".encode("ascii") + target + b"." + body


def sign(secret: bytes, timestamp: str, method: str, target: bytes, body: bytes) -> str:
    """The ``X-TGFlow-Signature`` value for a request."""
    digest = hmac.new(secret, signed_bytes(timestamp, method, target, body), hashlib.sha256)
    return f"{SCHEME}={digest.hexdigest()}"


def _offered(header: str) -> list[str]:
    if len(header) > _MAX_HEADER:
        raise TokenInvalid(f"the {SIGNATURE_HEADER} header is too long")
    entries = [part.strip() for part in header.split(",") if part.strip()]
    if len(entries) > _MAX_ENTRIES:
        raise TokenInvalid(f"the {SIGNATURE_HEADER} header has too many entries")
    offered = []
    for entry in entries:
        scheme, sep, value = entry.partition("=")
        # Unknown schemes are skipped, so a caller can send a future scheme beside v1.
        if sep and scheme.strip() == SCHEME and _HEX_SHA256.fullmatch(value.strip().lower()):
            offered.append(value.strip().lower())
    if not offered:
        raise TokenInvalid(f"{SIGNATURE_HEADER} carries no {SCHEME}=<64 hex digits> signature")
    return offered


def verify(request: SignedRequest, secrets: Sequence[bytes], now: datetime) -> None:
    """Accept ``request`` or raise: 503 without secrets, 401 for any signature problem."""
    if not secrets:
        raise ServiceUnavailable(
            "the integration API is disabled: no TGFLOW_EXTERNAL_HMAC_SECRETS is configured"
        )
    if not request.timestamp or not request.signature:
        raise TokenInvalid(
            f"a signed request needs the {TIMESTAMP_HEADER} and {SIGNATURE_HEADER} headers"
        )
    timestamp = request.timestamp.strip()
    if not _TIMESTAMP.fullmatch(timestamp):
        raise TokenInvalid(f"{TIMESTAMP_HEADER} must be whole Unix seconds")
    offered = _offered(request.signature)
    message = signed_bytes(timestamp, request.method, request.target, request.body)
    expected = [hmac.new(s, message, hashlib.sha256).hexdigest() for s in secrets]
    # Every pair is compared (no early exit) so the time taken says nothing about which matched.
    matched = False
    for mine in expected:
        for theirs in offered:
            matched |= hmac.compare_digest(mine, theirs)
    if not matched:
        raise TokenInvalid("the request signature does not match")
    # Checked after the signature: only a caller holding a secret learns about the clock.
    skew = int(timestamp) - int(now.timestamp())
    if abs(skew) > TOLERANCE_SECONDS:
        when = "in the future" if skew > 0 else "old"
        raise TokenInvalid(
            f"the signed timestamp is {abs(skew)} s {when}; requests are accepted within "
            f"{TOLERANCE_SECONDS} s of the server's clock (replay protection)"
        )
