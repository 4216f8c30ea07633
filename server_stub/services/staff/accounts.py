"""Staff accounts: created, listed, disabled and their 2FA reset by an Admin (or the CLI acting
as one); TOTP enrolment by the staff member themself."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from ...db import transaction
from ...errors import AlreadyExists, Forbidden, InvalidCredentials, NotFound
from ...models import Staff, StaffRecoveryCode
from ...passwords import hash_password
from ..audit import record
from ..context import ServiceContext
from .permissions import Role
from .sessions import (
    StaffIssued,
    StaffPrincipal,
    StaffSessions,
    normalise_email,
    revoke_all,
    staff_object,
)
from .totp import matching_step, new_recovery_codes, new_secret, provisioning_uri, recovery_digest


@dataclass(frozen=True)
class TotpSetup:
    secret: str
    otpauth_uri: str


@dataclass(frozen=True)
class TotpEnabled:
    issued: StaffIssued
    recovery_codes: list[str]


class StaffAccounts:
    def __init__(self, ctx: ServiceContext, sessions: StaffSessions) -> None:
        self._ctx = ctx
        self._sessions = sessions

    # --- Admin ----------------------------------------------------------------------------------

    def create(self, actor: str, email: str, name: str, role: Role, password: str) -> Staff:
        email = normalise_email(email)
        password_hash = hash_password(password)  # slow: outside the transaction
        now = self._ctx.clock.now()
        try:
            with transaction(self._ctx.write) as session:
                if session.scalar(select(Staff.id).where(Staff.email == email)) is not None:
                    raise AlreadyExists("a staff account with this e-mail already exists")
                staff = Staff(
                    email=email, name=name, role=role, password_hash=password_hash, created_at=now
                )
                session.add(staff)
                session.flush()
                record(
                    session,
                    now,
                    actor,
                    "staff.create",
                    staff_object(staff.id),
                    {"email": email, "name": name, "role": str(role)},
                )
                return staff
        except IntegrityError as exc:  # a concurrent creation of the same e-mail won
            raise AlreadyExists("a staff account with this e-mail already exists") from exc

    def list(self) -> list[Staff]:
        with transaction(self._ctx.read) as session:
            return list(session.scalars(select(Staff).order_by(Staff.created_at, Staff.email)))

    def find(self, id_or_email: str) -> Staff:
        with transaction(self._ctx.read) as session:
            staff = session.scalar(
                select(Staff).where(
                    (Staff.id == id_or_email) | (Staff.email == normalise_email(id_or_email))
                )
            )
        if staff is None:
            raise NotFound("no such staff account")
        return staff

    def disable(self, actor: str, staff_id: str) -> Staff:
        if actor.endswith(f":{staff_id}"):
            raise Forbidden("an Admin cannot disable their own account")
        now = self._ctx.clock.now()
        with transaction(self._ctx.write) as session:
            staff = session.get(Staff, staff_id, with_for_update=True)
            if staff is None:
                raise NotFound("no such staff account")
            if staff.disabled_at is None:
                staff.disabled_at = now
                revoke_all(session, staff.id, now, "disabled")
                record(session, now, actor, "staff.disable", staff_object(staff.id))
            return staff

    def reset_2fa(self, actor: str, staff_id: str) -> Staff:
        """Clear TOTP and the recovery codes and end every session: the next login enrols anew."""
        now = self._ctx.clock.now()
        with transaction(self._ctx.write) as session:
            staff = session.get(Staff, staff_id, with_for_update=True)
            if staff is None:
                raise NotFound("no such staff account")
            staff.totp_secret = None
            staff.totp_enabled_at = None
            staff.totp_last_step = None
            session.execute(delete(StaffRecoveryCode).where(StaffRecoveryCode.staff_id == staff.id))
            revoke_all(session, staff.id, now, "2fa_reset")
            record(session, now, actor, "staff.reset_2fa", staff_object(staff.id))
            return staff

    # --- one's own account ----------------------------------------------------------------------

    def setup_totp(self, principal: StaffPrincipal) -> TotpSetup:
        """A new secret, pending until a code from it confirms it (:meth:`enable_totp`)."""
        secret = new_secret()
        with transaction(self._ctx.write) as session:
            staff = session.get(Staff, principal.staff.id, with_for_update=True)
            if staff is None:
                raise NotFound("no such staff account")
            if staff.totp_enabled_at is not None:
                raise AlreadyExists("TOTP is already enabled; an Admin can reset it")
            staff.totp_secret = secret
            uri = provisioning_uri(secret, staff.email, self._ctx.settings.issuer)
        return TotpSetup(secret, uri)

    def enable_totp(self, principal: StaffPrincipal, otp: str) -> TotpEnabled:
        """Confirm the pending secret with a code; a fresh session with ``amr`` pwd+otp replaces
        the current one, and the recovery codes are shown this once."""
        now = self._ctx.clock.now()
        codes = new_recovery_codes()
        with transaction(self._ctx.write) as session:
            staff = session.get(Staff, principal.staff.id, with_for_update=True)
            if staff is None:
                raise NotFound("no such staff account")
            if staff.totp_enabled_at is not None:
                raise AlreadyExists("TOTP is already enabled; an Admin can reset it")
            if staff.totp_secret is None:
                raise NotFound("no TOTP secret to confirm: call /staff/me/totp/setup first")
            step = matching_step(staff.totp_secret, otp, now, staff.totp_last_step)
            if step is None:
                raise InvalidCredentials("the one-time code does not match the new secret")
            staff.totp_enabled_at = now
            staff.totp_last_step = step
            session.execute(delete(StaffRecoveryCode).where(StaffRecoveryCode.staff_id == staff.id))
            session.add_all(
                StaffRecoveryCode(staff_id=staff.id, code_hash=recovery_digest(code))
                for code in codes
            )
            revoke_all(session, staff.id, now, "totp_enabled")
            record(session, now, principal.actor, "staff.totp_enabled", staff_object(staff.id))
            issued = self._sessions.start(session, staff, ["pwd", "otp"], now)
        return TotpEnabled(issued, codes)
