"""The providers' webhook signature schemes, both ways: verifying what arrives, and signing (the
fake provider servers of tests and the demo sign exactly as the real providers do).

- Stripe: ``Stripe-Signature: t=<unix seconds>,v1=<hex>[,v1=<hex>…]`` where each ``v1`` is
  HMAC-SHA256 over ``"{t}.{raw body}"`` with the endpoint's signing secret; a timestamp more than
  300 s from now is refused (a replay). Several ``v1`` and several configured secrets are accepted
  so a secret can be rotated without losing events.
- CloudPayments: ``Content-HMAC`` (and ``X-Content-HMAC``) = base64 of HMAC-SHA256 of the raw body
  with the API secret.

Every comparison is constant-time; no secret configured means every webhook is refused (fail
closed), never accepted.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence
from datetime import datetime
from typing import Final

#: Stripe's default tolerance for the signed timestamp.
STRIPE_TOLERANCE_S: Final = 300


class SignatureRejected(Exception):
    """The webhook is not genuine, is stale, or no secret is configured to check it."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _hmac_sha256(secret: str, payload: bytes) -> bytes:
    return hmac.new(secret.encode("utf-8"), payload, hashlib.sha256).digest()


def stripe_signature_header(secret: str, payload: bytes, timestamp: int) -> str:
    """The ``Stripe-Signature`` header Stripe would send for ``payload`` at ``timestamp``."""
    signed = f"{timestamp}.".encode() + payload
    return f"t={timestamp},v1={_hmac_sha256(secret, signed).hex()}"


def verify_stripe_signature(
    header: str | None,
    payload: bytes,
    secrets: Sequence[str],
    *,
    now: datetime,
    tolerance_s: int = STRIPE_TOLERANCE_S,
) -> int:
    """Check a ``Stripe-Signature`` header; returns its timestamp. Raises
    :class:`SignatureRejected`."""
    usable = [s for s in secrets if s]
    if not usable:
        raise SignatureRejected("no Stripe webhook secret is configured")
    if not header:
        raise SignatureRejected("the Stripe-Signature header is missing")
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name == "t" and value.isascii() and value.isdigit() and len(value) <= 12:
            timestamp = int(value)
        elif name == "v1" and value:
            candidates.append(value)
    if timestamp is None or not candidates:
        raise SignatureRejected("the Stripe-Signature header has no timestamp or no v1 signature")
    if abs(now.timestamp() - timestamp) > tolerance_s:
        raise SignatureRejected("the Stripe-Signature timestamp is outside the tolerance")
    signed = f"{timestamp}.".encode() + payload
    # Every pair is compared (no early exit): the time taken says nothing about which matched.
    matched = False
    for secret in usable:
        expected = _hmac_sha256(secret, signed).hex()
        for candidate in candidates:
            matched |= hmac.compare_digest(expected, candidate)
    if not matched:
        raise SignatureRejected("no Stripe signature matches")
    return timestamp


def cloudpayments_hmac(secret: str, payload: bytes) -> str:
    """The ``Content-HMAC`` header CloudPayments would send for ``payload``."""
    return base64.b64encode(_hmac_sha256(secret, payload)).decode("ascii")


def verify_cloudpayments_hmac(header: str | None, payload: bytes, secrets: Sequence[str]) -> None:
    """Check a ``Content-HMAC`` header. Raises :class:`SignatureRejected`."""
    usable = [s for s in secrets if s]
    if not usable:
        raise SignatureRejected("no CloudPayments API secret is configured")
    if not header:
        raise SignatureRejected("the Content-HMAC header is missing")
    given = header.strip().encode("ascii", "replace")
    matched = False
    for secret in usable:
        matched |= hmac.compare_digest(cloudpayments_hmac(secret, payload).encode("ascii"), given)
    if not matched:
        raise SignatureRejected("the CloudPayments signature does not match")
