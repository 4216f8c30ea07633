"""Staff login (password, then TOTP or a recovery code), rotated refresh, logout, and the
checks every staff request passes: a live session, an enabled account, the permission, 2FA."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from ...db import transaction
from ...errors import (
    Forbidden,
    InvalidCredentials,
    RateLimited,
    TokenExpired,
    TokenInvalid,
    TotpRequired,
)
from ...models import AuditEntry, Staff, StaffRecoveryCode, StaffRefreshToken, StaffSession
from ...passwords import verify_password
from ...staff_tokens import StaffClaims, StaffTokens
from ...tokens import opaque_token, token_digest
from ..audit import record
from ..context import ServiceContext
from .permissions import Permission, Role, allowed, totp_required
from .totp import matching_step, recovery_digest
from .totp_vault import TotpVault

log = logging.getLogger("tgflow.server.staff")

_NOT_A_REFRESH_TOKEN = "this refresh token is not valid; log in again"
#: Wrong second factors (after a right password) allowed to an account per window: a 6-digit
#: code would otherwise fall to a patient guesser holding the password.
MAX_SECOND_FACTOR_FAILURES = 5
SECOND_FACTOR_WINDOW = timedelta(minutes=15)
_WRONG_CODE = "the one-time code is wrong, expired or already used"


def staff_actor(staff_id: str) -> str:
    return f"staff:{staff_id}"


def staff_object(staff_id: str) -> str:
    return f"staff/{staff_id}"


def normalise_email(email: str) -> str:
    return email.strip().lower()


@dataclass(frozen=True)
class StaffIssued:
    staff: Staff
    access_token: str
    access_exp: int
    refresh_token: str
    session_expires_at: datetime
    amr: list[str]


@dataclass(frozen=True)
class StaffPrincipal:
    """The authenticated staff member behind a request (role as stored now, not as signed)."""

    staff: Staff
    role: Role
    session_id: str
    amr: tuple[str, ...]

    @property
    def actor(self) -> str:
        return staff_actor(self.staff.id)

    @property
    def second_factor_done(self) -> bool:
        return "otp" in self.amr


class StaffSessions:
    def __init__(self, ctx: ServiceContext, tokens: StaffTokens, vault: TotpVault) -> None:
        self._ctx = ctx
        self._tokens = tokens
        self._vault = vault

    # --- login ----------------------------------------------------------------------------------

    def login(
        self, email: str, password: str, otp: str | None, recovery_code: str | None
    ) -> StaffIssued:
        email = normalise_email(email)
        with transaction(self._ctx.read) as session:
            staff = session.scalar(select(Staff).where(Staff.email == email))
        if not verify_password(staff.password_hash if staff else None, password) or staff is None:
            if staff is not None:
                self._failed(staff.id, "password")
            raise InvalidCredentials("wrong e-mail or password")
        if staff.disabled_at is not None:
            raise Forbidden("this staff account is disabled")
        now = self._ctx.clock.now()
        failed: str | None = None
        with transaction(self._ctx.write) as session:
            locked = session.get(Staff, staff.id, with_for_update=True)
            if locked is None:
                raise InvalidCredentials("wrong e-mail or password")
            amr = ["pwd"]
            if locked.totp_enabled_at is not None:
                self._check_attempts(session, locked.id, now)
                failed = self._second_factor(session, locked, otp, recovery_code, now)
                if failed is None:
                    amr.append("otp")
            if failed is None:
                issued = self._start(session, locked, amr, now)
                record(
                    session,
                    now,
                    staff_actor(locked.id),
                    "staff.login",
                    staff_object(locked.id),
                    {"amr": amr, "recovery_code": recovery_code is not None and otp is None},
                )
                return issued
        self._failed(staff.id, failed)
        raise InvalidCredentials(_WRONG_CODE)

    def _second_factor(
        self,
        session: Session,
        staff: Staff,
        otp: str | None,
        recovery_code: str | None,
        now: datetime,
    ) -> str | None:
        """``None`` when the code holds (and is spent), else what failed."""
        if otp:
            # No key, or the wrong one: TotpKeyUnavailable (503), never a code judged without it.
            secret = self._vault.secret_of(staff)
            step = matching_step(secret, otp, now, staff.totp_last_step) if secret else None
            if step is None:
                return "otp"
            staff.totp_last_step = step
            return None
        if recovery_code:
            spent = session.execute(
                update(StaffRecoveryCode)
                .where(
                    StaffRecoveryCode.staff_id == staff.id,
                    StaffRecoveryCode.code_hash == recovery_digest(recovery_code),
                    StaffRecoveryCode.used_at.is_(None),
                )
                .values(used_at=now)
            )
            return None if spent.rowcount == 1 else "recovery_code"  # type: ignore[attr-defined]
        raise TotpRequired("this account uses two-factor authentication: send its one-time code")

    @staticmethod
    def _check_attempts(session: Session, staff_id: str, now: datetime) -> None:
        """Refuse (429) an account's second factor after too many wrong ones in the window.

        The audit log is the record: its ``staff.login_failed`` entries of this account.
        """
        since = now - SECOND_FACTOR_WINDOW
        # Password failures are not counted: anyone who knows the e-mail could lock it out.
        failures = [
            at
            for at, failed in session.execute(
                select(AuditEntry.at, AuditEntry.details)
                .where(
                    AuditEntry.object == staff_object(staff_id),
                    AuditEntry.action == "staff.login_failed",
                    AuditEntry.at >= since,
                )
                .order_by(AuditEntry.seq.desc())
            )
            if (failed or {}).get("failed") != "password"
        ]
        if len(failures) >= MAX_SECOND_FACTOR_FAILURES:
            free_at = failures[MAX_SECOND_FACTOR_FAILURES - 1] + SECOND_FACTOR_WINDOW
            retry = max(1, int((free_at - now).total_seconds()) + 1)
            raise RateLimited(
                "too many wrong one-time codes for this account; try again later",
                headers={"Retry-After": str(retry)},
            )

    def _failed(self, staff_id: str, what: str) -> None:
        # Audited for known accounts only: an unknown e-mail is not a person to keep a record of.
        with transaction(self._ctx.write) as session:
            record(
                session,
                self._ctx.clock.now(),
                staff_actor(staff_id),
                "staff.login_failed",
                staff_object(staff_id),
                {"failed": what},
            )

    def start(self, session: Session, staff: Staff, amr: list[str], now: datetime) -> StaffIssued:
        return self._start(session, staff, amr, now)

    def _start(self, session: Session, staff: Staff, amr: list[str], now: datetime) -> StaffIssued:
        expires = now + timedelta(seconds=self._ctx.settings.staff_session_ttl_seconds)
        family = StaffSession(staff_id=staff.id, amr=amr, created_at=now, expires_at=expires)
        session.add(family)
        session.flush()
        return self._issue(session, staff, family, now)

    def _issue(
        self, session: Session, staff: Staff, family: StaffSession, now: datetime
    ) -> StaffIssued:
        refresh = opaque_token()
        session.add(
            StaffRefreshToken(
                session_id=family.id, token_hash=token_digest(refresh), created_at=now
            )
        )
        access, exp = self._tokens.issue(
            staff_id=staff.id, role=staff.role, session_id=family.id, amr=family.amr, now=now
        )
        return StaffIssued(staff, access, exp, refresh, family.expires_at, list(family.amr))

    # --- refresh / logout -----------------------------------------------------------------------

    def refresh(self, refresh_token: str) -> StaffIssued:
        now = self._ctx.clock.now()
        with transaction(self._ctx.write) as session:
            row = session.execute(
                select(StaffRefreshToken, StaffSession, Staff)
                .join(StaffSession, StaffSession.id == StaffRefreshToken.session_id)
                .join(Staff, Staff.id == StaffSession.staff_id)
                .where(StaffRefreshToken.token_hash == token_digest(refresh_token))
                .with_for_update(of=StaffRefreshToken)
            ).first()
            if row is None:
                raise TokenInvalid(_NOT_A_REFRESH_TOKEN)
            token, family, staff = row
            if token.used_at is None and family.revoked_at is not None:
                raise TokenInvalid("this staff session has ended; log in again")
            if token.used_at is None:
                if family.expires_at <= now:
                    raise TokenExpired("this staff session has ended; log in again")
                if staff.disabled_at is not None:
                    raise Forbidden("this staff account is disabled")
                marked = session.execute(
                    update(StaffRefreshToken)
                    .where(StaffRefreshToken.id == token.id, StaffRefreshToken.used_at.is_(None))
                    .values(used_at=now)
                )
                if marked.rowcount == 1:  # type: ignore[attr-defined]
                    return self._issue(session, staff, family, now)
            if family.revoked_at is None:
                # A spent token came back: someone holds a copy. End the whole family.
                family.revoked_at = now
                family.revoked_reason = "refresh_reuse"
                record(
                    session,
                    now,
                    staff_actor(staff.id),
                    "staff.session_revoked",
                    staff_object(staff.id),
                    {"session": family.id, "reason": "refresh_reuse"},
                )
                log.warning("staff refresh token reuse; session revoked")
        raise TokenInvalid("this refresh token was already used; the session is revoked")

    def logout(self, principal: StaffPrincipal) -> None:
        now = self._ctx.clock.now()
        with transaction(self._ctx.write) as session:
            session.execute(
                update(StaffSession)
                .where(StaffSession.id == principal.session_id, StaffSession.revoked_at.is_(None))
                .values(revoked_at=now, revoked_reason="logout")
            )
            record(session, now, principal.actor, "staff.logout", staff_object(principal.staff.id))

    # --- every request --------------------------------------------------------------------------

    def verify_signature(self, token: str) -> StaffClaims:
        return self._tokens.verify(token, now=self._ctx.clock.now())

    def authenticate(self, token: str) -> StaffPrincipal:
        claims = self.verify_signature(token)
        now = self._ctx.clock.now()
        with transaction(self._ctx.read) as session:
            row = session.execute(
                select(StaffSession, Staff)
                .join(Staff, Staff.id == StaffSession.staff_id)
                .where(StaffSession.id == claims.session_id)
            ).first()
        if row is None or row[1].id != claims.staff_id:
            raise TokenInvalid("unknown staff session")
        family, staff = row
        if family.revoked_at is not None or family.expires_at <= now:
            raise TokenInvalid("this staff session has ended; log in again")
        if staff.disabled_at is not None:
            raise Forbidden("this staff account is disabled")
        return StaffPrincipal(staff, Role(staff.role), family.id, tuple(family.amr))

    @staticmethod
    def authorize(principal: StaffPrincipal, permission: Permission) -> None:
        """Refuse (403) what the role may not do, and anything but one's own account to a role
        that must use TOTP and has not (yet) logged in with it."""
        if not allowed(principal.role, permission):
            raise Forbidden(f"the {principal.role} role may not use {permission}")
        if (
            permission is not Permission.SELF
            and totp_required(principal.role)
            and not principal.second_factor_done
        ):
            raise Forbidden(
                f"the {principal.role} role must use two-factor authentication: enrol TOTP "
                "(POST /staff/me/totp/setup) and log in with a one-time code"
            )


def revoke_all(session: Session, staff_id: str, now: datetime, reason: str) -> None:
    session.execute(
        update(StaffSession)
        .where(StaffSession.staff_id == staff_id, StaffSession.revoked_at.is_(None))
        .values(revoked_at=now, revoked_reason=reason)
    )
