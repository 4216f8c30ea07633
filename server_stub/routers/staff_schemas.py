"""Request and response models of ``/staff`` (the operator API; no agent-side client yet)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field, StringConstraints

from ..services.staff import Permission, Role

#: Staff passwords are longer than end users' (operators hold signing rights).
StaffPassword = Annotated[str, StringConstraints(min_length=10, max_length=1024)]
OneTimeCode = Annotated[str, StringConstraints(pattern=r"^[0-9]{6}$")]
RecoveryCode = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9-]{16,32}$")]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StaffLoginRequest(_In):
    email: EmailStr
    password: Annotated[str, StringConstraints(min_length=1, max_length=1024)]
    otp: OneTimeCode | None = Field(default=None, description="TOTP code, when enrolled")
    recovery_code: RecoveryCode | None = Field(
        default=None, description="A single-use recovery code instead of the TOTP code"
    )


class StaffRefreshRequest(_In):
    refresh_token: Annotated[str, StringConstraints(min_length=1, max_length=256)]


class StaffCreateRequest(_In):
    email: EmailStr
    name: Annotated[str, StringConstraints(min_length=1, max_length=100, strip_whitespace=True)]
    role: Role
    password: StaffPassword


class TotpEnableRequest(_In):
    otp: OneTimeCode


class StaffOut(BaseModel):
    id: str
    email: str
    name: str
    role: Role
    created_at: datetime
    disabled: bool
    totp_enabled: bool
    totp_required: bool


class StaffTokensOut(BaseModel):
    token: str = Field(description="RS256 staff token (aud tgflow-staff), 15 minutes")
    token_type: Literal["Bearer"] = "Bearer"
    exp: int
    refresh_token: str = Field(description="Opaque, single use; rotated on every refresh")
    session_expires_at: datetime
    amr: list[str]
    staff: StaffOut
    #: ``enrol_required``: the role needs TOTP and the account has none yet: only the
    #: ``staff.self`` endpoints answer until it is enrolled.
    second_factor: Literal["done", "enrol_required", "not_enrolled"]


class MeOut(BaseModel):
    staff: StaffOut
    amr: list[str]
    permissions: list[Permission]


class PermissionTableOut(BaseModel):
    roles: dict[Role, list[Permission]]
    totp_required: dict[Role, bool]


class TotpSetupOut(BaseModel):
    secret: str
    otpauth_uri: str


class TotpEnabledOut(BaseModel):
    tokens: StaffTokensOut
    recovery_codes: list[str] = Field(description="Shown once; each works once")


class KeyOut(BaseModel):
    kid: str
    purpose: str
    alg: str
    state: str
    created_at: datetime
    pin: str


class AuditEntryOut(BaseModel):
    seq: int
    at: str
    actor: str
    action: str
    object: str
    details: dict[str, Any]
    prev_hash: str
    hash: str


class AuditPageOut(BaseModel):
    entries: list[AuditEntryOut]
    next_cursor: str | None


class AuditVerdictOut(BaseModel):
    ok: bool
    entries: int
    head_seq: int | None
    head_hash: str | None
    unanchored: int
    broken_seq: int | None
    reason: str | None
    #: The newest signed checkpoint (its ``seq`` and signing time); ``unanchored`` entries follow.
    last_checkpoint_seq: int | None = None
    last_checkpoint_at: str | None = None
