"""``/staff``: staff login with TOTP, their accounts, the signing keys, and the audit log.

Every endpoint names its permission (``x-permission`` in the OpenAPI document); the dependency
:func:`require` enforces it before the body is even read, from the one table in
``services.staff.permissions``. ``public`` marks the two endpoints that take no staff token.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, status
from fastapi.responses import StreamingResponse

from agent.protocol import (
    KEY_PURPOSE_AUTH,
    KEY_PURPOSE_LICENSE,
    ErrorCode,
    Rfc3339DateTime,
    audit_time,
)

from ..deps import ServicesDep
from ..keys import SigningKey
from ..services.audit import MAX_PAGE, entry_dict
from ..services.staff import (
    ROLE_PERMISSIONS,
    Permission,
    Role,
    StaffIssued,
    totp_required,
)
from .staff_auth import StaffDep, staff_endpoint
from .staff_schemas import (
    AuditEntryOut,
    AuditPageOut,
    AuditVerdictOut,
    KeyOut,
    MeOut,
    PermissionTableOut,
    StaffCreateRequest,
    StaffLoginRequest,
    StaffOut,
    StaffRefreshRequest,
    StaffTokensOut,
    TotpEnabledOut,
    TotpEnableRequest,
    TotpSetupOut,
)

router = APIRouter(prefix="/staff", tags=["staff"])


def endpoint(
    method: str, path: str, permission: Permission | None, *codes: ErrorCode, **kwargs: Any
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a ``/staff`` route of this router that names its permission (``None``: public)."""
    return staff_endpoint(router, method, path, permission, *codes, **kwargs)


def _staff_out(staff: Any) -> StaffOut:
    return StaffOut(
        id=staff.id,
        email=staff.email,
        name=staff.name,
        role=Role(staff.role),
        created_at=staff.created_at,
        disabled=staff.disabled_at is not None,
        totp_enabled=staff.totp_enabled_at is not None,
        totp_required=totp_required(Role(staff.role)),
    )


def _tokens_out(issued: StaffIssued) -> StaffTokensOut:
    if "otp" in issued.amr:
        second = "done"
    elif totp_required(Role(issued.staff.role)):
        second = "enrol_required"
    else:
        second = "not_enrolled"
    return StaffTokensOut(
        token=issued.access_token,
        exp=issued.access_exp,
        refresh_token=issued.refresh_token,
        session_expires_at=issued.session_expires_at,
        amr=issued.amr,
        staff=_staff_out(issued.staff),
        second_factor=second,
    )


# --- login and one's own account ---------------------------------------------------------------


@endpoint(
    "POST",
    "/login",
    None,
    ErrorCode.INVALID_CREDENTIALS,
    ErrorCode.TOTP_REQUIRED,
    ErrorCode.RATE_LIMITED,
    response_model=StaffTokensOut,
    summary="Log in with e-mail, password and (when enrolled) a TOTP or recovery code",
)
def login(body: StaffLoginRequest, services: ServicesDep) -> StaffTokensOut:
    return _tokens_out(
        services.staff.login(body.email, body.password, body.otp, body.recovery_code)
    )


@endpoint(
    "POST",
    "/refresh",
    None,
    response_model=StaffTokensOut,
    summary="Rotate the refresh token; a reused one ends its whole session",
)
def refresh(body: StaffRefreshRequest, services: ServicesDep) -> StaffTokensOut:
    return _tokens_out(services.staff.refresh(body.refresh_token))


@endpoint(
    "POST", "/logout", Permission.SELF, status_code=status.HTTP_204_NO_CONTENT, summary="Log out"
)
def logout(principal: StaffDep, services: ServicesDep) -> None:
    services.staff.logout(principal)


@endpoint("GET", "/me", Permission.SELF, response_model=MeOut, summary="Who am I")
def me(principal: StaffDep) -> MeOut:
    return MeOut(
        staff=_staff_out(principal.staff),
        amr=list(principal.amr),
        permissions=sorted(ROLE_PERMISSIONS[principal.role]),
    )


@endpoint(
    "GET",
    "/permissions",
    Permission.SELF,
    response_model=PermissionTableOut,
    summary="The permission table of every role",
)
def permissions() -> PermissionTableOut:
    return PermissionTableOut(
        roles={role: sorted(perms) for role, perms in ROLE_PERMISSIONS.items()},
        totp_required={role: totp_required(role) for role in Role},
    )


@endpoint(
    "POST",
    "/me/totp/setup",
    Permission.SELF,
    ErrorCode.ALREADY_EXISTS,
    response_model=TotpSetupOut,
    summary="Start TOTP enrolment: a new secret for the authenticator app",
)
def totp_setup(principal: StaffDep, services: ServicesDep) -> TotpSetupOut:
    setup = services.staff.setup_totp(principal)
    return TotpSetupOut(secret=setup.secret, otpauth_uri=setup.otpauth_uri)


@endpoint(
    "POST",
    "/me/totp/enable",
    Permission.SELF,
    ErrorCode.ALREADY_EXISTS,
    ErrorCode.INVALID_CREDENTIALS,
    ErrorCode.NOT_FOUND,
    response_model=TotpEnabledOut,
    summary="Confirm TOTP with a code; returns a 2FA session and the recovery codes",
)
def totp_enable(
    body: TotpEnableRequest, principal: StaffDep, services: ServicesDep
) -> TotpEnabledOut:
    enabled = services.staff.enable_totp(principal, body.otp)
    return TotpEnabledOut(tokens=_tokens_out(enabled.issued), recovery_codes=enabled.recovery_codes)


# --- staff accounts (Admin) --------------------------------------------------------------------


@endpoint(
    "GET", "/accounts", Permission.STAFF_MANAGE, response_model=list[StaffOut], summary="Staff"
)
def list_accounts(services: ServicesDep) -> list[StaffOut]:
    return [_staff_out(staff) for staff in services.staff.list()]


@endpoint(
    "POST",
    "/accounts",
    Permission.STAFF_MANAGE,
    ErrorCode.ALREADY_EXISTS,
    status_code=status.HTTP_201_CREATED,
    response_model=StaffOut,
    summary="Create a staff account",
)
def create_account(
    body: StaffCreateRequest, principal: StaffDep, services: ServicesDep
) -> StaffOut:
    staff = services.staff.create(principal.actor, body.email, body.name, body.role, body.password)
    return _staff_out(staff)


@endpoint(
    "POST",
    "/accounts/{staff_id}/disable",
    Permission.STAFF_MANAGE,
    ErrorCode.NOT_FOUND,
    response_model=StaffOut,
    summary="Disable a staff account and end its sessions",
)
def disable_account(staff_id: str, principal: StaffDep, services: ServicesDep) -> StaffOut:
    return _staff_out(services.staff.disable(principal.actor, staff_id))


@endpoint(
    "POST",
    "/accounts/{staff_id}/reset-2fa",
    Permission.STAFF_MANAGE,
    ErrorCode.NOT_FOUND,
    response_model=StaffOut,
    summary="Clear TOTP and recovery codes and end the sessions; the next login enrols anew",
)
def reset_2fa(staff_id: str, principal: StaffDep, services: ServicesDep) -> StaffOut:
    return _staff_out(services.staff.reset_2fa(principal.actor, staff_id))


# --- signing keys (Admin) ----------------------------------------------------------------------


def _key_out(key: SigningKey, state: str) -> KeyOut:
    return KeyOut(
        kid=key.kid,
        purpose=key.purpose,
        alg=key.alg,
        state=state,
        created_at=key.created_at,
        pin=key.pin,
    )


@endpoint("GET", "/keys", Permission.KEYS_MANAGE, response_model=list[KeyOut], summary="Keys")
def list_keys(services: ServicesDep) -> list[KeyOut]:
    return [_key_out(key, state) for key, state in services.staff.keys.list()]


@endpoint(
    "POST",
    "/keys/{purpose}/rotate",
    Permission.KEYS_MANAGE,
    ErrorCode.VALIDATION_ERROR,
    response_model=KeyOut,
    summary=f"Rotate the {KEY_PURPOSE_AUTH} or {KEY_PURPOSE_LICENSE} key (the old one stays "
    "published until what it signed has expired)",
)
def rotate_key(
    purpose: Literal["auth", "license"], principal: StaffDep, services: ServicesDep
) -> KeyOut:
    return _key_out(services.staff.keys.rotate(principal.actor, purpose), "active")


# --- the audit log -----------------------------------------------------------------------------


@endpoint(
    "GET",
    "/audit",
    Permission.AUDIT_READ,
    response_model=AuditPageOut,
    summary="Search the audit log, newest first (cursor pagination)",
)
def search_audit(
    services: ServicesDep,
    actor: Annotated[str | None, Query(max_length=100)] = None,
    object: Annotated[
        str | None, Query(max_length=300, description="This object path and everything under it")
    ] = None,
    action: Annotated[str | None, Query(max_length=64)] = None,
    since: Rfc3339DateTime | None = None,
    until: Rfc3339DateTime | None = None,
    cursor: Annotated[
        str | None, Query(pattern=r"^[0-9]{1,18}$", description="next_cursor of the last page")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
) -> AuditPageOut:
    page = services.audit.search(
        actor=actor,
        obj=object,
        action=action,
        since=since,
        until=until,
        cursor=cursor,
        limit=limit,
    )
    return AuditPageOut(
        entries=[AuditEntryOut(**entry_dict(row)) for row in page.entries],
        next_cursor=page.next_cursor,
    )


@endpoint(
    "GET",
    "/audit/verify",
    Permission.AUDIT_READ,
    response_model=AuditVerdictOut,
    summary="Walk the chain and the checkpoints; names the first broken entry",
)
def verify_audit(services: ServicesDep) -> AuditVerdictOut:
    verdict = services.audit.verify()
    return AuditVerdictOut(
        ok=verdict.ok,
        entries=verdict.entries,
        head_seq=verdict.head_seq,
        head_hash=verdict.head_hash,
        unanchored=verdict.unanchored,
        broken_seq=verdict.broken_seq,
        reason=verdict.reason,
        last_checkpoint_seq=verdict.last_checkpoint_seq,
        last_checkpoint_at=(
            audit_time(verdict.last_checkpoint_at) if verdict.last_checkpoint_at else None
        ),
    )


@endpoint(
    "GET",
    "/audit/export",
    Permission.AUDIT_READ,
    response_class=StreamingResponse,
    summary="The log as JSON lines with its signed checkpoints, verifiable offline",
)
def export_audit(
    principal: StaffDep,
    services: ServicesDep,
    from_seq: Annotated[int, Query(ge=1, le=2**63 - 1)] = 1,
) -> StreamingResponse:
    services.audit.append(principal.actor, "audit.export", "audit", {"from_seq": from_seq})
    return StreamingResponse(
        services.audit.export(from_seq=from_seq), media_type="application/x-ndjson"
    )
