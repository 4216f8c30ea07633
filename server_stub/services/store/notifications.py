"""RuStore's server notifications: ``{id, timestamp, payload}``, the payload Base64 of
AES-256-GCM (a 12-byte IV, the ciphertext, a 16-byte tag) under the console's key.

Read before anything is stored: no key configured → ``forbidden`` (403, fail closed); a payload
that does not decrypt under the key (wrong key, tampered bytes or tag) → ``token_invalid`` (401);
a genuine payload that does not say what it is → ``validation_error`` (422).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from agent.protocol.store import SUBSCRIPTION_TOKEN_MAX

from ...errors import Forbidden, TokenInvalid, ValidationFailed
from ..billing.contract import ProviderName
from ..webhooks.intake import MAX_EVENT_ID, Incoming, _storable
from .rustore import parse_time

IV_BYTES: Final = 12
TAG_BYTES: Final = 16
KEY_BYTES: Final = 32
#: The notification types; ``_SANDBOX`` ones are of test payments.
INVOICE_STATUS: Final = "INVOICE_STATUS"
TEST_EVENT: Final = "TEST_EVENT"
TYPES: Final = frozenset(
    {INVOICE_STATUS, f"{INVOICE_STATUS}_SANDBOX", TEST_EVENT, f"{TEST_EVENT}_SANDBOX"}
)


@dataclass(frozen=True)
class Notification:
    """A decrypted notification, as the inbox's applier reads it from the stored payload."""

    type: str
    invoice_id: str | None
    change_status_time: datetime | None
    #: ``purchase_token``: of a subscription's invoice, the subscription's token.
    purchase_token: str | None = None

    @property
    def sandbox(self) -> bool:
        return self.type.endswith("_SANDBOX")


def console_key(encoded: str | None) -> bytes | None:
    """The console's key (Base64 of 32 bytes), or ``None`` when unset or not such a key."""
    if not encoded:
        return None
    try:
        key = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        return None
    return key if len(key) == KEY_BYTES else None


def encrypt(key: bytes, payload: dict[str, Any], iv: bytes | None = None) -> str:
    """What RuStore sends (the fake RuStore and the tests use it)."""
    iv = iv or os.urandom(IV_BYTES)
    sealed = AESGCM(key).encrypt(iv, json.dumps(payload).encode("utf-8"), None)
    return base64.b64encode(iv + sealed).decode("ascii")


def read_rustore(body: bytes, key: bytes | None) -> Incoming:
    """Verify (decrypt) and read a RuStore notification into what the inbox stores."""
    if key is None:
        raise Forbidden("rustore webhooks are refused: no console key is configured")
    envelope = _json_object(body, "the body is not a JSON object")
    sealed = envelope.get("payload")
    if not isinstance(sealed, str) or len(sealed) > 65_536:
        raise TokenInvalid("the notification has no payload to decrypt")
    try:
        raw = base64.b64decode(sealed, validate=True)
    except (binascii.Error, ValueError):
        raise TokenInvalid("the payload is not Base64") from None
    if len(raw) < IV_BYTES + TAG_BYTES:
        raise TokenInvalid("the payload is too short for AES-GCM")
    try:
        plain = AESGCM(key).decrypt(raw[:IV_BYTES], raw[IV_BYTES:], None)
    except InvalidTag:
        raise TokenInvalid("the payload does not decrypt under the console key") from None
    event_id = envelope.get("id")
    if isinstance(event_id, int) and not isinstance(event_id, bool):
        event_id = str(event_id)
    if not isinstance(event_id, str) or not 0 < len(event_id) <= MAX_EVENT_ID:
        raise ValidationFailed(f"the notification has no id (1 to {MAX_EVENT_ID} characters)")
    payload = _json_object(plain, "the decrypted payload is not a JSON object")
    data = payload.get("data")
    if isinstance(data, str):  # RuStore sends ``data`` as a JSON string
        payload["data"] = _json_object(data.encode("utf-8"), "the payload's data is not JSON")
    notification = read_notification(payload)
    return Incoming(
        provider=ProviderName.RUSTORE,
        event_id=event_id,
        kind=notification.type,
        body=body,
        payload=_storable(payload),
        headers={"Content-Type": "application/json"},
        event_at=notification.change_status_time or parse_time(envelope.get("timestamp")),
    )


def read_notification(payload: dict[str, Any]) -> Notification:
    kind = payload.get("notification_type")
    if kind not in TYPES:
        raise ValidationFailed("the notification's type is not one RuStore sends")
    assert isinstance(kind, str)
    if kind.startswith(TEST_EVENT):
        return Notification(kind, None, None)
    data = payload.get("data")
    if not isinstance(data, dict):
        raise ValidationFailed("a payment notification needs its data")
    invoice = data.get("invoice_id")
    if isinstance(invoice, int) and not isinstance(invoice, bool):
        invoice = str(invoice)
    if not isinstance(invoice, str) or not 0 < len(invoice) <= 150:
        raise ValidationFailed("a payment notification needs its invoice_id")
    changed = parse_time(data.get("change_status_time"))
    if changed is None:
        raise ValidationFailed("a payment notification needs its change_status_time")
    token = data.get("purchase_token")
    if not isinstance(token, str) or not 0 < len(token) <= SUBSCRIPTION_TOKEN_MAX:
        token = None  # only a subscription's invoice needs it
    return Notification(kind, invoice, changed, token)


def _json_object(raw: bytes, complaint: str) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ValidationFailed(complaint) from None
    if not isinstance(value, dict):
        raise ValidationFailed(complaint)
    return value
