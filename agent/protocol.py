"""The TGFlow wire contract: request/response models, error codes and protocol constants.

This module is shared by the reference backend (``server_stub``) and the license agent. It holds
pydantic models, constants and pure functions of the wire values (the device-fingerprint matching
rule): no I/O, no Qt, no server code.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Final, Literal

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    EmailStr,
    Field,
    Strict,
    StrictBool,
    StrictFloat,
    StrictInt,
    StringConstraints,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    model_validator,
)
from pydantic_core import PydanticCustomError

# --- protocol constants -------------------------------------------------------------------------

#: Lifetime of an access token, in seconds (DESIGN.md: 15 min).
ACCESS_TOKEN_TTL_SECONDS: Final = 15 * 60
#: Lifetime of a refresh token, in seconds (DESIGN.md: 30 days, rotated on every use).
REFRESH_TOKEN_TTL_SECONDS: Final = 30 * 24 * 3600
#: Default offline grace of a license lease, in seconds (DESIGN.md: 72 h).
DEFAULT_LEASE_TTL_SECONDS: Final = 72 * 3600
#: A reservation not committed within this many seconds is released by the server.
RESERVATION_TTL_SECONDS: Final = 15 * 60
#: A ``correlation_id`` replays the same reservation for this many seconds.
IDEMPOTENCY_WINDOW_SECONDS: Final = 15 * 60
#: Largest clock leeway any verifier may allow, in seconds.
MAX_LEEWAY_SECONDS: Final = 60
#: A local clock that jumps back by more than this many seconds is treated as tampering.
CLOCK_ROLLBACK_TOLERANCE_SECONDS: Final = 5 * 60

#: JWT ``alg`` for each token type: verifiers must name exactly this algorithm.
ACCESS_TOKEN_ALG: Final = "RS256"
LEASE_ALG: Final = "RS256"
LICENSE_FILE_ALG: Final = "ES256"

#: JWT audiences; one per token type, so that a token of one type never passes as another.
ACCESS_TOKEN_AUDIENCE: Final = "tgflow-api"
LEASE_AUDIENCE: Final = "tgflow-lease"

#: Key purposes, as published in the JWKS ``use``-independent ``purpose`` member.
KEY_PURPOSE_AUTH: Final = "auth"
KEY_PURPOSE_LICENSE: Final = "license"

PIN_PREFIX: Final = "sha256/"

#: Prefix of a component-wise device fingerprint (see ``agent.fingerprint`` and docs/agent.md).
FINGERPRINT_V1_PREFIX: Final = "v1."
#: Separator between the components of a v1 fingerprint.
FINGERPRINT_SEPARATOR: Final = "."
#: Stands for a component the agent could not read on this machine.
FINGERPRINT_MISSING: Final = "-"
#: Length of one encoded component: base64url of an HMAC-SHA256, cut to 132 bits.
FINGERPRINT_COMPONENT_LENGTH: Final = 22
#: A fingerprint with fewer components than this only ever matches exactly.
FINGERPRINT_MIN_COMPONENTS: Final = 3

PROBLEM_CONTENT_TYPE: Final = "application/problem+json"


class ErrorCode(StrEnum):
    """Stable machine-readable codes carried in every problem-details response."""

    VALIDATION_ERROR = "validation_error"
    INVALID_CREDENTIALS = "invalid_credentials"
    #: Staff login: the account has TOTP enrolled and no one-time or recovery code came with it.
    TOTP_REQUIRED = "totp_required"
    TOKEN_INVALID = "token_invalid"
    TOKEN_EXPIRED = "token_expired"
    FORBIDDEN = "forbidden"
    DEVICE_LIMIT = "device_limit"
    LICENSE_INACTIVE = "license_inactive"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    ALREADY_EXISTS = "already_exists"
    IDEMPOTENCY_CONFLICT = "idempotency_conflict"
    RESERVATION_CONFLICT = "reservation_conflict"
    RESERVATION_EXPIRED = "reservation_expired"
    QUOTA_EXCEEDED = "quota_exceeded"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    RATE_LIMITED = "rate_limited"
    SERVICE_UNAVAILABLE = "service_unavailable"
    INTERNAL_ERROR = "internal_error"


#: HTTP status that goes with each error code.
ERROR_STATUS: Final[dict[ErrorCode, int]] = {
    ErrorCode.VALIDATION_ERROR: 422,
    ErrorCode.INVALID_CREDENTIALS: 401,
    ErrorCode.TOTP_REQUIRED: 401,
    ErrorCode.TOKEN_INVALID: 401,
    ErrorCode.TOKEN_EXPIRED: 401,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.DEVICE_LIMIT: 403,
    ErrorCode.LICENSE_INACTIVE: 403,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.METHOD_NOT_ALLOWED: 405,
    ErrorCode.ALREADY_EXISTS: 409,
    ErrorCode.IDEMPOTENCY_CONFLICT: 409,
    ErrorCode.RESERVATION_CONFLICT: 409,
    ErrorCode.RESERVATION_EXPIRED: 409,
    ErrorCode.QUOTA_EXCEEDED: 409,
    ErrorCode.PAYLOAD_TOO_LARGE: 413,
    ErrorCode.RATE_LIMITED: 429,
    ErrorCode.SERVICE_UNAVAILABLE: 503,
    ErrorCode.INTERNAL_ERROR: 500,
}


# --- field types --------------------------------------------------------------------------------

#: Opaque device fingerprint computed by the agent (already hashed; never a raw hardware id).
Fingerprint = Annotated[
    str, StringConstraints(min_length=16, max_length=256, pattern=r"^[A-Za-z0-9_.:\-]+$")
]
#: Client-chosen idempotency key of a reservation.
CorrelationId = Annotated[
    str, StringConstraints(min_length=8, max_length=128, pattern=r"^[A-Za-z0-9_.:\-]+$")
]
Password = Annotated[str, StringConstraints(min_length=8, max_length=1024)]
LoginPassword = Annotated[str, StringConstraints(min_length=1, max_length=1024)]
DeviceName = Annotated[
    str, StringConstraints(min_length=1, max_length=100, pattern=r"^[^\x00-\x1f\x7f]+$")
]
OpaqueToken = Annotated[
    str, StringConstraints(min_length=16, max_length=512, pattern=r"^[A-Za-z0-9_\-]+$")
]
Identifier = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_\-]+$")
]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


class _Response(BaseModel):
    model_config = ConfigDict(extra="ignore")


# --- problem details ----------------------------------------------------------------------------


class ValidationIssue(_Response):
    """One field that failed validation."""

    loc: list[str | int]
    msg: str
    type: str


class Problem(_Response):
    """RFC 9457 problem details, extended with a stable ``code``."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    code: ErrorCode
    instance: str | None = None
    errors: list[ValidationIssue] | None = None


# --- auth ---------------------------------------------------------------------------------------


class RegisterRequest(_Request):
    email: EmailStr
    password: Password
    device_fingerprint: Fingerprint
    device_name: DeviceName | None = None


class LoginRequest(_Request):
    email: EmailStr
    password: LoginPassword
    device_fingerprint: Fingerprint
    device_name: DeviceName | None = None


class RefreshRequest(_Request):
    refresh_token: OpaqueToken
    device_fingerprint: Fingerprint


class LogoutRequest(_Request):
    refresh_token: OpaqueToken | None = None


class UserOut(_Response):
    id: str
    email: str
    created_at: datetime


class TokenResponse(_Response):
    token: str = Field(description="RS256 access token, 15 minutes")
    token_type: Literal["Bearer"] = "Bearer"
    refresh_token: str = Field(description="Opaque refresh token, 30 days, single use")
    refresh_expires_at: datetime
    user: UserOut
    exp: int = Field(description="Access-token expiry, seconds since the epoch")


# --- license ------------------------------------------------------------------------------------


class LicenseStatus(StrEnum):
    ACTIVE = "active"
    INACTIVE = "inactive"


class Quota(_Response):
    limit: int
    used: int
    held: int
    remaining: int
    period_end: datetime | None


class DeviceBinding(_Response):
    fingerprint: str
    bound: bool
    devices_used: int
    devices_max: int


class LicenseResponse(_Response):
    plan: str | None
    status: LicenseStatus
    quota: Quota
    device_binding: DeviceBinding
    features: list[str]
    lease: str = Field(description="RS256 license lease for offline use")
    lease_expires_at: datetime


class DeviceOut(_Response):
    id: str
    name: str | None
    created_at: datetime
    last_seen_at: datetime
    current: bool


class DeviceList(_Response):
    devices: list[DeviceOut]
    devices_max: int


# --- usage --------------------------------------------------------------------------------------


class ReservationStatus(StrEnum):
    HELD = "held"
    COMMITTED = "committed"
    ROLLED_BACK = "rolled_back"
    EXPIRED = "expired"


class ReserveRequest(_Request):
    messages: int = Field(ge=1, le=100_000)
    correlation_id: CorrelationId


class ReservationResponse(_Response):
    reservation_id: str
    messages: int
    expires_at: datetime
    remaining: int
    status: ReservationStatus


class CommitRequest(_Request):
    reservation_id: Identifier
    used: int = Field(ge=0, le=100_000)


class RollbackRequest(_Request):
    reservation_id: Identifier


class SettleResponse(_Response):
    reservation_id: str
    status: ReservationStatus
    messages: int
    used: int
    remaining: int


# --- telemetry ----------------------------------------------------------------------------------
#
# Anonymous usage events from the desktop (docs/server.md, "Telemetry"). The limits are chosen so
# that a batch with everything at its limit (100 events, every string at its longest) stays under
# the server's default 64 KiB body cap.

#: Most events in one ``POST /telemetry/events``.
TELEMETRY_MAX_BATCH: Final = 100
#: Most properties on one event, and the longest property key and string value.
TELEMETRY_MAX_PROPERTIES: Final = 6
TELEMETRY_MAX_KEY_LENGTH: Final = 24
TELEMETRY_MAX_STRING_LENGTH: Final = 24
TELEMETRY_MAX_NAME_LENGTH: Final = 48
TELEMETRY_MAX_APP_VERSION_LENGTH: Final = 32

#: ``broadcast.finished``: dot-separated lower-case words.
TELEMETRY_NAME_PATTERN: Final = r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$"
TELEMETRY_KEY_PATTERN: Final = r"^[a-z][a-z0-9_]*$"
#: String values are short codes (``simulated``, ``FloodWait``), never free text.
TELEMETRY_STRING_PATTERN: Final = r"^[A-Za-z0-9_.:+\-]*$"
TELEMETRY_APP_VERSION_PATTERN: Final = r"^[0-9A-Za-z][0-9A-Za-z.+\-]*$"
#: A random id per installation (``uuid4().hex``), linked to no user or device.
TELEMETRY_INSTALL_ID_PATTERN: Final = r"^[0-9a-f]{32}$"
TELEMETRY_EVENT_ID_PATTERN: Final = (
    r"^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$"
)

#: Property keys that could carry personal data. A key is dropped when it contains one of the
#: longer words anywhere (``user_email``, ``recipients``) or has one of the short ones as a
#: ``_``-separated word (``ip``, ``msg``); see :func:`telemetry_key_denied`.
TELEMETRY_DENIED_WORDS: Final = frozenset(
    {
        "recipient",
        "text",
        "message",
        "caption",
        "body",
        "phone",
        "user",
        "login",
        "mail",
        "name",
        "chat",
        "peer",
        "contact",
        "address",
        "password",
        "token",
        "secret",
        "hash",
    }
)
TELEMETRY_DENIED_TOKENS: Final = frozenset({"ip", "msg", "tel", "sms", "uid"})

_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")


def telemetry_key_denied(key: str) -> bool:
    """Whether a telemetry property key names something that may be personal data.

    The desktop drops such properties before they are sent and the server drops them again
    before they are stored: recipients, message text, phone numbers, user names, e-mail
    addresses, and the like never leave the machine.
    """
    lowered = key.lower()
    if any(word in lowered for word in TELEMETRY_DENIED_WORDS):
        return True
    return any(
        part in TELEMETRY_DENIED_TOKENS or part.removesuffix("s") in TELEMETRY_DENIED_TOKENS
        for part in re.split(r"[^a-z0-9]+", lowered)
    )


def _rfc3339_text(value: object) -> object:
    # pydantic would also take Unix timestamps and dates without seconds; the wire format is
    # RFC 3339 text only, as the schema says. (A datetime comes only from Python callers.)
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not _RFC3339.fullmatch(value):
        raise ValueError("must be an RFC 3339 date-time with a UTC offset")
    return value


def _as_utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError:  # within hours of year 1 or 9999: the nearest representable instant
        return (datetime.min if value.year == 1 else datetime.max).replace(tzinfo=UTC)


def _lower(value: str) -> str:
    return value.lower()


EventId = Annotated[
    str, StringConstraints(pattern=TELEMETRY_EVENT_ID_PATTERN), AfterValidator(_lower)
]
EventName = Annotated[
    str,
    StringConstraints(
        min_length=1, max_length=TELEMETRY_MAX_NAME_LENGTH, pattern=TELEMETRY_NAME_PATTERN
    ),
]
Rfc3339DateTime = Annotated[AwareDatetime, BeforeValidator(_rfc3339_text), AfterValidator(_as_utc)]
AppVersion = Annotated[
    str,
    StringConstraints(
        min_length=1,
        max_length=TELEMETRY_MAX_APP_VERSION_LENGTH,
        pattern=TELEMETRY_APP_VERSION_PATTERN,
    ),
]
InstallId = Annotated[str, StringConstraints(pattern=TELEMETRY_INSTALL_ID_PATTERN)]
PropertyKey = Annotated[
    str,
    StringConstraints(
        min_length=1, max_length=TELEMETRY_MAX_KEY_LENGTH, pattern=TELEMETRY_KEY_PATTERN
    ),
]
PropertyString = Annotated[
    str,
    Strict(),
    StringConstraints(max_length=TELEMETRY_MAX_STRING_LENGTH, pattern=TELEMETRY_STRING_PATTERN),
]


def _one_property_error(value: object, handler: ValidatorFunctionWrapHandler) -> object:
    # One clear message instead of one per member of the union.
    try:
        return handler(value)
    except ValidationError:
        raise PydanticCustomError(
            "telemetry_property",
            "must be a boolean, a finite number, or a code of at most {max} characters from "
            "A-Z a-z 0-9 _ . : + -",
            {"max": TELEMETRY_MAX_STRING_LENGTH},
        ) from None


PropertyValue = Annotated[
    # Strict members: "0000" stays a string (and must fit its limits), never becomes 0.
    StrictBool | StrictInt | Annotated[StrictFloat, Field(allow_inf_nan=False)] | PropertyString,
    WrapValidator(_one_property_error),
]


def _properties_schema(schema: dict[str, Any]) -> None:
    # pydantic documents a constrained key as ``patternProperties``, which lets a key that does
    # not match through in JSON Schema terms; ``propertyNames`` states the rule exactly.
    patterns = schema.pop("patternProperties", {})
    (value_schema,) = patterns.values()
    schema["propertyNames"] = {
        "minLength": 1,
        "maxLength": TELEMETRY_MAX_KEY_LENGTH,
        "pattern": TELEMETRY_KEY_PATTERN,
    }
    schema["additionalProperties"] = value_schema


class TelemetryEvent(_Request):
    """One anonymous usage event. It carries no user, account, recipient or message data."""

    event_id: EventId = Field(description="Random UUID chosen by the client; the idempotency key")
    name: EventName = Field(examples=["broadcast.finished"])
    occurred_at: Rfc3339DateTime
    app_version: AppVersion = Field(examples=["0.1.0"])
    install_id: InstallId = Field(
        description="Random id of the installation (uuid4 hex), linked to no user or device"
    )
    properties: dict[PropertyKey, PropertyValue] = Field(
        default_factory=dict,
        max_length=TELEMETRY_MAX_PROPERTIES,
        description="Counters and short codes; keys that may name personal data are dropped",
        json_schema_extra=_properties_schema,
    )


class TelemetryBatch(_Request):
    events: list[TelemetryEvent] = Field(min_length=1, max_length=TELEMETRY_MAX_BATCH)


class TelemetryAccepted(_Response):
    accepted: int = Field(description="Events stored by this request")
    duplicates: int = Field(
        description="Events already stored, or repeated within the batch (not stored again)"
    )


# --- misc ---------------------------------------------------------------------------------------


class Health(_Response):
    status: Literal["ok", "degraded"]
    version: str
    database: Literal["ok", "unavailable"]


class Jwk(_Response):
    model_config = ConfigDict(extra="allow")
    kty: str
    kid: str
    alg: str
    use: str


class Jwks(_Response):
    keys: list[Jwk]


# --- device fingerprints ------------------------------------------------------------------------

_COMPONENT = re.compile(rf"[A-Za-z0-9_\-]{{{FINGERPRINT_COMPONENT_LENGTH}}}")


def fingerprint_components(fingerprint: str) -> tuple[str | None, ...]:
    """Split a device fingerprint into its components, ``None`` standing for a missing one.

    A well-formed v1 fingerprint (``v1.`` + at least ``FINGERPRINT_MIN_COMPONENTS`` components,
    each 22 base64url characters or ``-``) yields one entry per component, in order. Anything
    else (an older client's opaque fingerprint, a malformed v1 string) is one opaque component.
    """
    if fingerprint.startswith(FINGERPRINT_V1_PREFIX):
        parts = fingerprint[len(FINGERPRINT_V1_PREFIX) :].split(FINGERPRINT_SEPARATOR)
        if len(parts) >= FINGERPRINT_MIN_COMPONENTS and all(
            part == FINGERPRINT_MISSING or _COMPONENT.fullmatch(part) for part in parts
        ):
            return tuple(None if part == FINGERPRINT_MISSING else part for part in parts)
    return (fingerprint,)


def fingerprint_agreement(a: str, b: str) -> tuple[int, int]:
    """``(matching, compared)``: components present in both fingerprints, and how many agree.

    Fingerprints of different shapes (opaque vs v1, or different component counts) compare
    nothing: ``(0, 0)``.
    """
    left, right = fingerprint_components(a), fingerprint_components(b)
    if len(left) != len(right) or len(left) < FINGERPRINT_MIN_COMPONENTS:
        return 0, 0
    pairs = [(x, y) for x, y in zip(left, right, strict=True) if x is not None and y is not None]
    matching = sum(hmac.compare_digest(x.encode(), y.encode()) for x, y in pairs)
    return matching, len(pairs)


def same_device(stored: str, presented: str) -> bool:
    """Whether ``presented`` identifies the same device as ``stored``.

    The rule (docs/agent.md, "Device fingerprint"): equal strings always match. Otherwise both
    must be v1 fingerprints with the same number (at least ``FINGERPRINT_MIN_COMPONENTS``) of
    components; only the components present in both are compared, at least two must be, and a
    strict majority of those must be equal. A component missing on either side counts neither
    for nor against. Opaque fingerprints, and anything with fewer components, match only exactly.
    """
    if hmac.compare_digest(stored.encode(), presented.encode()):
        return True
    matching, compared = fingerprint_agreement(stored, presented)
    return compared >= 2 and 2 * matching > compared


def problem_example(code: ErrorCode, detail: str) -> dict[str, Any]:
    """Build an example problem body (used in OpenAPI documentation)."""
    return {
        "type": "about:blank",
        "title": code.value.replace("_", " ").capitalize(),
        "status": ERROR_STATUS[code],
        "detail": detail,
        "code": code.value,
    }


# --- key identity (the same definitions on both sides of the wire) ------------------------------


def b64url(data: bytes) -> str:
    """Base64url without padding (RFC 7515 §2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def public_key_pin(public_key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey) -> str:
    """The pin of a key: ``sha256/`` + base64url(SHA-256 of its DER SubjectPublicKeyInfo)."""
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return PIN_PREFIX + b64url(hashlib.sha256(der).digest())


def jwk_thumbprint(jwk: Mapping[str, Any]) -> str:
    """RFC 7638 SHA-256 thumbprint of a public RSA or EC JWK: the ``kid`` of every key."""
    required = ("e", "kty", "n") if jwk["kty"] == "RSA" else ("crv", "kty", "x", "y")
    canonical = json.dumps({k: jwk[k] for k in required}, separators=(",", ":"), sort_keys=True)
    return b64url(hashlib.sha256(canonical.encode("utf-8")).digest())


# --- staff and audit (docs/licensing.md) ----------------------------------------------------------
#
# Operators of the backend (seed 003's portal staff) and the one hash-chained audit log.

#: The staff access token: RS256 with the ``auth`` key, its own ``aud`` and ``typ`` claim.
STAFF_TOKEN_ALG: Final = "RS256"
STAFF_TOKEN_AUDIENCE: Final = "tgflow-staff"
STAFF_TOKEN_TYP: Final = "staff-access"
STAFF_TOKEN_TTL_SECONDS: Final = 15 * 60
#: An audit checkpoint: ES256 JWS with the ``license`` key, ``kid`` and this ``typ`` in its header.
AUDIT_CHECKPOINT_ALG: Final = "ES256"
AUDIT_CHECKPOINT_TYP: Final = "audit-checkpoint"
#: ``prev_hash`` of the first entry of the log.
AUDIT_GENESIS_HASH: Final = "0" * 64
#: Format name of the first line of an audit export (JSON lines).
AUDIT_EXPORT_FORMAT: Final = "tgflow-audit-export/1"
#: The members of an audit entry that its hash covers, in the canonical form.
AUDIT_ENTRY_FIELDS: Final = ("seq", "at", "actor", "action", "object", "details", "prev_hash")


def audit_time(value: datetime) -> str:
    """An audit entry's ``at`` in its one canonical text: UTC, microseconds, ``Z``."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def audit_canonical(entry: Mapping[str, Any]) -> bytes:
    """The canonical form of an audit entry: the bytes its hash is taken of.

    JSON of exactly :data:`AUDIT_ENTRY_FIELDS`, keys sorted, no whitespace, UTF-8 (non-ASCII kept
    as is); ``at`` is the text of :func:`audit_time`. ``details`` holds only JSON objects,
    arrays, strings, integers, booleans and null (no floats: their text is not canonical).
    """
    body = {name: entry[name] for name in AUDIT_ENTRY_FIELDS}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.encode("utf-8")


def audit_entry_hash(entry: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of the canonical form; the next entry's ``prev_hash``."""
    return hashlib.sha256(audit_canonical(entry)).hexdigest()


@dataclass(frozen=True)
class AuditVerdict:
    """What a walk over an audit chain found: the first break, or that it holds."""

    entries: int
    head_seq: int | None
    head_hash: str | None
    #: Entries after the last checkpoint: not covered by a signature yet.
    unanchored: int
    broken_seq: int | None = None
    reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.reason is None


def audit_chain_verdict(
    entries: Iterable[Mapping[str, Any]],
    checkpoints: Mapping[int, str],
    *,
    prev_hash: str = AUDIT_GENESIS_HASH,
    first_seq: int | None = 1,
) -> AuditVerdict:
    """Walk ``entries`` in ``seq`` order and report the first break of the chain.

    ``checkpoints`` maps a checkpoint's ``seq`` to the ``hash`` it signed (signatures already
    checked by the caller). An edited entry no longer hashes to its ``hash``; a deleted one
    leaves a gap in ``seq`` (or, at the tail, a checkpoint beyond the last entry); entries moved
    to other places no longer hash to their ``hash``, or no longer link by ``prev_hash``.
    ``first_seq`` is ``None`` for an export that starts mid-log: its first ``prev_hash`` is then
    taken as given and the signed checkpoints anchor it.
    """
    count, seq, last_checkpoint = 0, None, 0
    expected = first_seq
    prev: str | None = prev_hash if first_seq == 1 else None

    def broken(at: int, reason: str) -> AuditVerdict:
        return AuditVerdict(count, seq, prev, 0, broken_seq=at, reason=reason)

    for entry in entries:
        try:
            current = int(entry["seq"])
            stated = str(entry["hash"])
            computed = audit_entry_hash(entry)
        except (KeyError, TypeError, ValueError):
            return broken((seq or 0) + 1, f"the entry after {seq or 'the start'} is malformed")
        if expected is not None and current != expected:
            if current > expected:
                return broken(expected, f"entry {expected} is missing (the next is {current})")
            return broken(current, f"entry {current} is out of order (expected {expected})")
        if stated != computed:
            return broken(current, f"entry {current} was altered: its hash does not match it")
        if prev is not None and entry["prev_hash"] != prev:
            return broken(
                current,
                f"entry {current} does not follow entry {current - 1}: "
                "an entry was altered, removed or moved",
            )
        signed = checkpoints.get(current)
        if signed is not None:
            if signed != computed:
                return broken(current, f"entry {current} differs from its signed checkpoint")
            last_checkpoint = current
        count, seq, prev, expected = count + 1, current, computed, current + 1
    beyond = [at for at in checkpoints if seq is None or at > seq]
    if beyond:
        missing = (seq or 0) + 1
        return broken(
            missing, f"entries {missing}..{max(beyond)} are missing: a checkpoint signed them"
        )
    unanchored = count if last_checkpoint == 0 else (seq or 0) - last_checkpoint
    return AuditVerdict(count, seq, prev, unanchored)


# --- marketplace (docs/marketplace.md) ----------------------------------------------------------
#
# The app marketplace of seed 000: tenant backends license and install apps; their users open them
# in an iframe with a User App Access Token that the backend signs with its own key.

#: ``aud`` of each marketplace token type (the User App Access Token's ``aud`` is the app id).
MARKETPLACE_ADMIN_AUDIENCE: Final = "tgflow-marketplace-admin"
MARKETPLACE_USER_AUDIENCE: Final = "tgflow-marketplace-user"
ENTITLEMENTS_AUDIENCE: Final = "tgflow-marketplace-entitlements"
#: ``typ`` claim of each marketplace token type: one never passes as another.
MARKETPLACE_ADMIN_TYP: Final = "marketplace-admin"
MARKETPLACE_USER_TYP: Final = "marketplace-user"
APP_ACCESS_TYP: Final = "app-access"
ENTITLEMENTS_TYP: Final = "entitlements"
#: ``scope`` of the Backend Admin Token and of the Backend User Token.
MARKETPLACE_ADMIN_SCOPE: Final = "marketplace:admin"
MARKETPLACE_USER_SCOPE: Final = "marketplace:read"
#: The one algorithm of each marketplace token type.
MARKETPLACE_ADMIN_ALG: Final = "RS256"
MARKETPLACE_USER_ALG: Final = "RS256"
APP_ACCESS_ALG: Final = "ES256"
ENTITLEMENTS_ALG: Final = "ES256"
#: Token lifetimes, in seconds.
BACKEND_ADMIN_TOKEN_TTL_SECONDS: Final = 365 * 24 * 3600
BACKEND_USER_TOKEN_TTL_SECONDS: Final = 3600
#: The longest a User App Access Token may live; a backend's replaced key stays published as long.
APP_ACCESS_TOKEN_TTL_SECONDS: Final = 30 * 60
ENTITLEMENTS_TTL_SECONDS: Final = 10 * 60
#: ``Cache-Control: max-age`` of a backend's JWKS (apps keep backend keys 24 h).
BACKEND_JWKS_MAX_AGE_SECONDS: Final = 24 * 3600
#: License defaults: a trial's length, and how long a paid license stays usable after it lapses.
MARKETPLACE_TRIAL_DAYS: Final = 14
MARKETPLACE_GRACE_DAYS: Final = 7

#: An app id: lower-case letters, digits and inner hyphens (it is the ``aud`` of app tokens).
APP_ID_PATTERN: Final = r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$"
#: A permission an app asks for and a User App Access Token grants (``chat:read``).
APP_PERMISSION_PATTERN: Final = r"^[a-z][a-z0-9_.:-]{0,63}$"
#: Installation config: at most this many settings, keys like identifiers, short values.
INSTALL_CONFIG_MAX_KEYS: Final = 32
INSTALL_CONFIG_KEY_PATTERN: Final = r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$"
INSTALL_CONFIG_MAX_STRING: Final = 1024
INSTALL_CONFIG_MAX_LIST: Final = 32
_P256_COORDINATE_PATTERN: Final = r"^[A-Za-z0-9_-]{43}$"


class MarketplacePlan(StrEnum):
    TRIAL = "trial"
    MONTHLY = "monthly"
    YEARLY = "yearly"
    PERPETUAL = "perpetual"


#: The plans a backend pays for (every plan but the trial).
PAID_PLANS: Final = (MarketplacePlan.MONTHLY, MarketplacePlan.YEARLY, MarketplacePlan.PERPETUAL)


class MarketplaceLicenseStatus(StrEnum):
    """A license's state, evaluated from its dates and the clock (docs/marketplace.md)."""

    PENDING = "pending"  # a paid plan ordered and not paid yet
    TRIAL = "trial"  # the trial runs
    ACTIVE = "active"  # paid, within its period (a perpetual license stays so)
    GRACE = "grace"  # the period ended unpaid; still usable for the grace days
    DISABLED = "disabled"  # the grace ended unpaid
    EXPIRED = "expired"  # the trial ended without a paid plan ordered
    REVOKED = "revoked"  # by the operator


#: States in which the app is listed in ``installed`` and in the entitlement snapshot.
USABLE_LICENSE_STATUSES: Final = frozenset(
    {
        MarketplaceLicenseStatus.TRIAL,
        MarketplaceLicenseStatus.ACTIVE,
        MarketplaceLicenseStatus.GRACE,
    }
)
#: States in which an app may be installed (docs/marketplace.md: an active or trial license).
INSTALLABLE_LICENSE_STATUSES: Final = frozenset(
    {MarketplaceLicenseStatus.TRIAL, MarketplaceLicenseStatus.ACTIVE}
)

AppId = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=APP_ID_PATTERN)]
AppPermission = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=APP_PERMISSION_PATTERN)
]


def _no_surrogates(value: str) -> str:
    # A lone surrogate cannot be written as UTF-8: it would fail when the answer is encoded.
    if any("\ud800" <= ch <= "\udfff" for ch in value):
        raise ValueError("must be valid Unicode text")
    return value


ConfigString = Annotated[
    str,
    Strict(),
    StringConstraints(max_length=INSTALL_CONFIG_MAX_STRING),
    AfterValidator(_no_surrogates),
]
ConfigScalar = (
    StrictBool | StrictInt | Annotated[StrictFloat, Field(allow_inf_nan=False)] | ConfigString
)


def _one_config_error(value: object, handler: ValidatorFunctionWrapHandler) -> object:
    # One clear message instead of one per member of the union.
    try:
        return handler(value)
    except ValidationError:
        raise PydanticCustomError(
            "install_config_value",
            "must be null, a boolean, a finite number, a string of at most {max} characters, "
            "or a list of at most {items} such values",
            {"max": INSTALL_CONFIG_MAX_STRING, "items": INSTALL_CONFIG_MAX_LIST},
        ) from None


ConfigValue = Annotated[
    ConfigScalar | Annotated[list[ConfigScalar], Field(max_length=INSTALL_CONFIG_MAX_LIST)] | None,
    WrapValidator(_one_config_error),
]
ConfigKey = Annotated[
    str,
    StringConstraints(min_length=1, max_length=64, pattern=INSTALL_CONFIG_KEY_PATTERN),
]


def _config_schema(schema: dict[str, Any]) -> None:
    # As for telemetry properties: ``propertyNames`` states the key rule exactly, where pydantic's
    # ``patternProperties`` would let a non-matching key through in JSON Schema terms.
    patterns = schema.pop("patternProperties", {})
    (value_schema,) = patterns.values()
    schema["propertyNames"] = {
        "minLength": 1,
        "maxLength": 64,
        "pattern": INSTALL_CONFIG_KEY_PATTERN,
    }
    schema["additionalProperties"] = value_schema


InstallConfig = Annotated[
    dict[ConfigKey, ConfigValue],
    Field(max_length=INSTALL_CONFIG_MAX_KEYS, json_schema_extra=_config_schema),
]


def _b64url_int(value: str) -> int:
    return int.from_bytes(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)), "big")


class BackendJwk(_Request):
    """A backend's public EC P-256 key (RFC 7517), as it registers it with the marketplace.

    ``kty``, ``crv``, ``x`` and ``y`` are required and the point must lie on the curve.
    ``kid``, ``alg`` and ``use`` may come along (as ``agent.marketplace.public_jwk`` writes them)
    but must then be the RFC 7638 thumbprint, ``ES256`` and ``sig``. Anything else, above all a
    private member such as ``d``, is refused: the marketplace never takes a private key.
    """

    kty: Literal["EC"]
    crv: Literal["P-256"]
    x: Annotated[str, StringConstraints(pattern=_P256_COORDINATE_PATTERN)]
    y: Annotated[str, StringConstraints(pattern=_P256_COORDINATE_PATTERN)]
    kid: str | None = Field(default=None, max_length=64, description="RFC 7638 thumbprint")
    alg: Literal["ES256"] | None = None
    use: Literal["sig"] | None = None

    @model_validator(mode="after")
    def _a_point_on_p256(self) -> BackendJwk:
        try:
            ec.EllipticCurvePublicNumbers(
                _b64url_int(self.x), _b64url_int(self.y), ec.SECP256R1()
            ).public_key()
        except ValueError:
            raise ValueError("x and y are not a point on P-256") from None
        if self.kid is not None and self.kid != jwk_thumbprint(self.public_members()):
            raise ValueError("kid is not the RFC 7638 thumbprint of the key")
        return self

    def public_members(self) -> dict[str, str]:
        """``kty``, ``crv``, ``x``, ``y``: the key itself, without optional members."""
        return {"kty": self.kty, "crv": self.crv, "x": self.x, "y": self.y}


class BackendKeyRegistration(_Request):
    jwk: BackendJwk


class BackendKeys(_Response):
    backend_id: str
    current_kid: str = Field(description="The key the backend signs User App Access Tokens with")
    keys: list[Jwk] = Field(description="Every key published now, the current one first")


class LicenseRequest(_Request):
    app_id: AppId
    plan: MarketplacePlan


class MarketplaceLicense(_Response):
    app_id: str
    plan: MarketplacePlan = Field(description="The plan held or ordered")
    status: MarketplaceLicenseStatus
    started_at: datetime | None = Field(description="Start of the trial or the paid period")
    expires_at: datetime | None = Field(description="End of the trial or the paid period")
    grace_until: datetime | None = Field(description="A lapsed paid license is usable until then")
    trial_ends_at: datetime | None = Field(description="End of the trial, if one was taken")


class AppPrices(_Response):
    """Prices in integer minor units of ``currency``; ``null``: the plan is not offered."""

    currency: str
    monthly: int | None
    yearly: int | None
    perpetual: int | None


class AppArtifact(_Response):
    """The app's files, on the developer's servers; the backend downloads and checks them."""

    url: str
    sha256: str
    size: int


class CatalogItem(_Response):
    id: str
    name: str
    description: str
    developer: str
    prices: AppPrices
    artifact: AppArtifact
    iframe_url: str
    permissions: list[str]
    license: MarketplaceLicense | None = Field(description="This backend's license, if any")
    installed: bool
    installed_at: datetime | None


class Catalog(_Response):
    apps: list[CatalogItem]


class InstallationRequest(_Request):
    app_id: AppId
    config: InstallConfig = Field(default_factory=dict)


class InstallationOut(_Response):
    backend_id: str
    app_id: str
    installed_at: datetime
    config: InstallConfig
    artifact: AppArtifact


class UserTokenResponse(_Response):
    token: str = Field(description="RS256 Backend User Token, 1 hour")
    token_type: Literal["Bearer"] = "Bearer"
    backend_id: str
    exp: int = Field(description="Expiry, seconds since the epoch")


class InstalledApp(_Response):
    id: str
    name: str
    description: str
    developer: str
    iframe_url: str
    permissions: list[str]
    installed_at: datetime
    license_status: MarketplaceLicenseStatus


class InstalledApps(_Response):
    backend_id: str
    apps: list[InstalledApp]


class EntitlementsResponse(_Response):
    snapshot: str = Field(
        description="ES256 JWS signed by the marketplace's license key: the backends entitled "
        "to the app now"
    )


# --- signed documents and license files (docs/license-files.md) ---------------------------------
#
# License files, machine activations, revocation lists and audit checkpoints are compact ES256 JWS
# signed with the server's ``license`` key, ``kid`` and ``typ`` in the protected header. The
# ``typ`` keeps one kind from ever passing as another (RFC 8725 §3.11, explicit typing).

#: The one algorithm of every signed document.
SIGNED_DOCUMENT_ALG: Final = "ES256"
#: Protected-header ``typ`` of each kind of signed document.
LICENSE_FILE_TYP: Final = "license-file"
MACHINE_ACTIVATION_TYP: Final = "machine-activation"
REVOCATION_LIST_TYP: Final = "revocation-list"
# AUDIT_CHECKPOINT_TYP (the audit log's checkpoints) is declared with the audit section above.
#: Protected-header ``cty`` of a license file whose payload is encrypted to its license key.
ENCRYPTED_LICENSE_CTY: Final = "license-file+a256gcm"
#: The ``format`` claim of a license file of this schema; another value is refused.
LICENSE_FILE_FORMAT: Final = "tgflow.license-file/1"
#: The ``format`` claim of a revocation list of this schema.
REVOCATION_LIST_FORMAT: Final = "tgflow.revocation-list/1"
#: The armour around a license file's JWS.
LICENSE_ARMOUR_BEGIN: Final = "-----BEGIN TGFLOW LICENSE-----"
LICENSE_ARMOUR_END: Final = "-----END TGFLOW LICENSE-----"
#: A license file may carry the newest revocation list after its license, in this armour.
REVOCATION_ARMOUR_BEGIN: Final = "-----BEGIN TGFLOW REVOCATION LIST-----"
REVOCATION_ARMOUR_END: Final = "-----END TGFLOW REVOCATION LIST-----"
#: Armour header carrying the signing key's public JWK (base64url JSON); used only if pinned.
SIGNING_KEY_ARMOUR_HEADER: Final = "Signing-Key"
#: Armoured lines are this many characters long (the JWS is cut, never changed).
ARMOUR_LINE_LENGTH: Final = 64
#: Encrypted files: AES-256-GCM, 96-bit nonce, key = HKDF-SHA256(license key, no salt, this info).
LICENSE_FILE_ENCRYPTION: Final = "A256GCM"
LICENSE_FILE_KDF: Final = "HKDF-SHA256"
LICENSE_FILE_KDF_INFO: Final = b"tgflow license file A256GCM v1"
LICENSE_FILE_NONCE_BYTES: Final = 12
#: A license key: what the customer types, and what an encrypted file's key is derived from.
LICENSE_KEY_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9-]{14,126}[A-Za-z0-9]$"
#: Product versions are dotted decimal numbers (``2``, ``2.4``, ``2.4.1``).
PRODUCT_VERSION_PATTERN: Final = r"^[0-9]{1,6}(\.[0-9]{1,6}){0,3}$"
#: An install domain: a host name, or ``*.`` + a host name for any of its subdomains.
INSTALL_DOMAIN_PATTERN: Final = (
    r"^(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
)


def license_file_key(license_key: str) -> bytes:
    """The AES-256-GCM key of a license file encrypted to ``license_key`` (HKDF-SHA256)."""
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=LICENSE_FILE_KDF_INFO)
    return hkdf.derive(license_key.encode("utf-8"))


def product_version_tuple(version: str) -> tuple[int, ...]:
    """``"2.4.1"`` → ``(2, 4, 1)``, trailing zeros dropped so that ``2.0`` equals ``2``."""
    if not re.fullmatch(PRODUCT_VERSION_PATTERN, version):
        raise ValueError(f"{version!r} is not a dotted decimal version")
    parts = [int(p) for p in version.split(".")]
    while len(parts) > 1 and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


LicenseKey = Annotated[str, StringConstraints(pattern=LICENSE_KEY_PATTERN)]
ProductVersion = Annotated[str, StringConstraints(pattern=PRODUCT_VERSION_PATTERN)]
InstallDomain = Annotated[str, StringConstraints(max_length=253, pattern=INSTALL_DOMAIN_PATTERN)]
ModuleName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_.-]{0,63}$")]
Limit = Annotated[int, Strict(), Field(ge=0)]
Seconds = Annotated[int, Strict(), Field(ge=0)]


class _SignedClaims(BaseModel):
    # Unknown members are kept out (a newer issuer may add some); known ones are strictly typed.
    model_config = ConfigDict(extra="ignore", frozen=True)


class LicenseLimits(_SignedClaims):
    """What a license allows; ``None`` means no limit."""

    users: Limit | None = None
    departments: Limit | None = None
    integrations: Limit | None = None
    api_rate: Limit | None = Field(default=None, description="API requests per minute")
    messages: Limit | None = Field(default=None, description="messages per calendar month")


class ProductVersionRange(_SignedClaims):
    """Versions of the product the license covers: ``min`` inclusive, ``max`` exclusive."""

    min: ProductVersion
    max: ProductVersion | None = None

    @model_validator(mode="after")
    def _ordered(self) -> ProductVersionRange:
        if self.max is not None and product_version_tuple(self.max) <= product_version_tuple(
            self.min
        ):
            raise ValueError("the version range is empty (max must be above min)")
        return self


class LicenseCustomer(_SignedClaims):
    id: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    name: Annotated[str, StringConstraints(min_length=1, max_length=300)]


class LicenseFileClaims(_SignedClaims):
    """The claims of a license file (the JWS payload, after decryption when encrypted).

    ``valid_until`` ends the paid validity; ``exp`` = ``valid_until`` + grace is when the file
    stops working altogether. Times are seconds since the epoch.
    """

    format: Literal["tgflow.license-file/1"]
    iss: str
    jti: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    iat: Seconds
    nbf: Seconds
    valid_until: Seconds
    exp: Seconds
    license_key: LicenseKey
    file_version: Annotated[int, Strict(), Field(ge=1)]
    customer: LicenseCustomer
    product: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_.-]{0,63}$")]
    plan: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    modules: tuple[ModuleName, ...]
    limits: LicenseLimits
    domain: InstallDomain
    versions: ProductVersionRange

    @model_validator(mode="after")
    def _times_ordered(self) -> LicenseFileClaims:
        if not self.nbf <= self.valid_until <= self.exp:
            raise ValueError("nbf <= valid_until <= exp does not hold")
        return self


class EncryptedLicensePayload(_SignedClaims):
    """The JWS payload of an encrypted license file (``cty`` :data:`ENCRYPTED_LICENSE_CTY`)."""

    enc: Literal["A256GCM"]
    kdf: Literal["HKDF-SHA256"]
    iv: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{16}$")]
    ciphertext: Annotated[str, StringConstraints(min_length=22, pattern=r"^[A-Za-z0-9_-]+$")]


class RevokedLicense(_SignedClaims):
    """One entry of a revocation list: the license's files of ``file_versions`` (``None``: all)."""

    license_key: LicenseKey
    file_versions: tuple[Annotated[int, Strict(), Field(ge=1)], ...] | None = None


class RevocationListClaims(_SignedClaims):
    """A signed revocation list; a newer ``iat`` supersedes, ``next_update`` is when to refetch."""

    format: Literal["tgflow.revocation-list/1"]
    iss: str
    iat: Seconds
    next_update: Seconds
    revoked: tuple[RevokedLicense, ...]
