"""The core of the wire contract: constants, error codes and the auth, license and usage models.

Also the problem-details body, health and JWKS models, and the device-fingerprint matching rule
(pure functions of the wire values).
"""

from __future__ import annotations

import hmac
import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Final, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    StringConstraints,
)

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
    #: The points wallet cannot pay: too few points, or a store refund left points owed.
    INSUFFICIENT_POINTS = "insufficient_points"
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
    ErrorCode.INSUFFICIENT_POINTS: 409,
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


def json_integer(value: object) -> object:
    """A JSON integer: ``5`` or ``5.0`` (JSON Schema's integers), never ``true`` or ``"5"``.

    Pydantic's lax ``int`` then refuses a fractional ``5.5``; strict mode would refuse ``5.0``,
    which every JSON Schema client may send for an integer.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("must be an integer")
    return value


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
    #: Which of a code's causes, where one code has several (a store purchase's
    #: ``purchase_not_paid``, ``purchase_mismatch``, ``purchase_unknown``, …).
    reason: str | None = None


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
