"""Reading an incoming webhook: is it genuine (signatures.py, fail closed), what is it (the
provider's event id, kind and time), and the row that stores it.

Every refusal happens before anything is stored: no secret configured → ``forbidden`` (403);
a missing, malformed, stale or wrong signature → ``token_invalid`` (401); a genuine body that
does not say what it is → ``validation_error`` (422). The signature is checked before the body
is parsed, so an unsigned caller learns nothing about what the parser wants.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import parse_qsl

from ...errors import Forbidden, TokenInvalid, ValidationFailed
from ..billing.contract import ProviderName
from ..billing.signatures import (
    SignatureRejected,
    verify_cloudpayments_hmac,
    verify_stripe_signature,
)
from .ports import CLOUDPAYMENTS_KIND_FIELD, CloudPaymentsKind

STRIPE_SIGNATURE_HEADER: Final = "Stripe-Signature"
CLOUDPAYMENTS_HMAC_HEADERS: Final = ("Content-HMAC", "X-Content-HMAC")
#: Longest event id kept (the column's width); Stripe's are about 30 characters.
MAX_EVENT_ID: Final = 200
#: Event times past this (year 3000) are not times: refused rather than overflowing.
_MAX_UNIX: Final = 32_503_680_000
_DIGITS = re.compile(r"[0-9]{1,20}")
#: CloudPayments' ``DateTime`` (UTC), ``2026-01-15 12:00:00``; ISO 8601 is also read.
_CP_TIME_FORMATS: Final = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S")


@dataclass(frozen=True)
class Incoming:
    """A verified webhook, read: what the inbox stores."""

    provider: ProviderName
    event_id: str
    kind: str
    body: bytes
    payload: dict[str, Any]
    headers: dict[str, str]
    event_at: datetime | None


def _unconfigured(provider: ProviderName) -> Forbidden:
    return Forbidden(
        f"{provider.value} webhooks are refused: no secret is configured to verify them"
    )


def read_stripe(
    body: bytes, signature: str | None, secrets: Sequence[str], now: datetime
) -> Incoming:
    """Verify and read a Stripe event (``id``, ``type``, ``created``)."""
    if not any(secrets):
        raise _unconfigured(ProviderName.STRIPE)
    try:
        verify_stripe_signature(signature, body, secrets, now=now)
    except SignatureRejected as exc:
        raise TokenInvalid(exc.reason) from None
    payload = _storable(_json_object(body))
    event_id = payload.get("id")
    kind = payload.get("type")
    created = payload.get("created")
    if not isinstance(event_id, str) or not 0 < len(event_id) <= MAX_EVENT_ID:
        raise _malformed(f"the event has no id (a string of 1 to {MAX_EVENT_ID} characters)")
    if not isinstance(kind, str) or not 0 < len(kind) <= 64:
        raise _malformed("the event has no type")
    if isinstance(created, bool) or not isinstance(created, int) or not 0 <= created < _MAX_UNIX:
        raise _malformed("the event has no created time (Unix seconds)")
    return Incoming(
        provider=ProviderName.STRIPE,
        event_id=event_id,
        kind=kind,
        body=body,
        payload=payload,
        headers={STRIPE_SIGNATURE_HEADER: signature or ""},
        event_at=datetime.fromtimestamp(created, UTC),
    )


def read_cloudpayments(
    body: bytes,
    kind: CloudPaymentsKind,
    content_type: str | None,
    signature: str | None,
    secret: str | None,
) -> Incoming:
    """Verify and read a CloudPayments notification (form-urlencoded, or JSON)."""
    if not secret:
        raise _unconfigured(ProviderName.CLOUDPAYMENTS)
    try:
        verify_cloudpayments_hmac(signature, body, [secret])
    except SignatureRejected as exc:
        raise TokenInvalid(exc.reason) from None
    is_json = (content_type or "").split(";")[0].strip().lower() == "application/json"
    fields = _json_object(body) if is_json else _form(body)
    payload = _storable({**fields, CLOUDPAYMENTS_KIND_FIELD: kind.value})
    return Incoming(
        provider=ProviderName.CLOUDPAYMENTS,
        event_id=_cloudpayments_event_id(fields, kind),
        kind=kind.value,
        body=body,
        payload=payload,
        headers={"Content-Type": content_type or "", "Content-HMAC": signature or ""},
        event_at=_cloudpayments_time(fields.get("DateTime")),
    )


def _cloudpayments_event_id(fields: Mapping[str, Any], kind: CloudPaymentsKind) -> str:
    if kind is CloudPaymentsKind.RECURRENT:
        # A subscription's notification has no transaction: it is the subscription (``Id``) in a
        # state; a change of status or of its counters is a new event, a redelivery is not.
        sub_id = fields.get("Id")
        if not isinstance(sub_id, str) or not 0 < len(sub_id) <= 64:
            raise _malformed("a Recurrent notification needs the subscription's Id")
        parts = [
            str(fields.get(name, ""))[:20]
            for name in ("Status", "SuccessfulTransactionsNumber", "FailedTransactionsNumber")
        ]
        return ":".join([sub_id, *parts, kind.value])
    transaction = fields.get("TransactionId")
    if isinstance(transaction, int) and not isinstance(transaction, bool) and transaction >= 0:
        transaction = str(transaction)
    if not isinstance(transaction, str) or not _DIGITS.fullmatch(transaction):
        raise _malformed("the notification needs a TransactionId (a whole number)")
    return f"{transaction}:{kind.value}"


def _cloudpayments_time(value: Any) -> datetime | None:
    """The notification's ``DateTime`` (UTC), or ``None`` when it has none or an unreadable one:
    it orders nothing in the inbox and billing reads the payload itself."""
    if not isinstance(value, str) or len(value) > 40:
        return None
    for form in _CP_TIME_FORMATS:
        try:
            return datetime.strptime(value, form).replace(tzinfo=UTC)
        except ValueError:
            continue
    return None


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise _malformed("the body is not JSON") from None
    if not isinstance(value, dict):
        raise _malformed("the body is not a JSON object")
    return value


def _storable(payload: dict[str, Any]) -> dict[str, Any]:
    """``payload`` if every database can store it as JSON: no NaN or infinity (Python reads
    them, JSON has none), no NUL character (PostgreSQL text has none), no lone surrogate."""
    try:
        json.dumps(payload, ensure_ascii=False, allow_nan=False).encode("utf-8")
        nul = _has_nul(payload)
    except (ValueError, UnicodeEncodeError, RecursionError):
        raise _malformed("the body holds a value JSON cannot store (NaN, lone surrogate)") from None
    if nul:
        raise _malformed("the body holds a NUL character")
    return payload


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


def _form(body: bytes) -> dict[str, Any]:
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=True)
    except (UnicodeDecodeError, ValueError):
        raise _malformed("the body is not a form (application/x-www-form-urlencoded)") from None
    fields = dict(pairs)
    if len(fields) != len(pairs):
        raise _malformed("a form field is repeated")
    return fields


def _malformed(detail: str) -> ValidationFailed:
    return ValidationFailed(detail)
