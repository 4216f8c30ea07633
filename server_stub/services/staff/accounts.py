"""Staff accounts: created, listed, disabled and their 2FA reset by an Admin (or the CLI acting
as one); TOTP enrolment by the staff member themself."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import delete, func, select, update
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
from .totp_vault import TotpVault

log = logging.getLogger("tgflow.server.staff")


def count_sealed_secrets(ctx: ServiceContext) -> int:
    """How many TOTP secrets are stored encrypted (under whatever key)."""
    with transaction(ctx.read) as session:
        query = select(func.count()).where(Staff.totp_secret_sealed.is_not(None))
        return session.scalar(query) or 0


@dataclass(frozen=True)
class TotpSetup:
    secret: str
    otpauth_uri: str


@dataclass(frozen=True)
class TotpEnabled:
    issued: StaffIssued
    recovery_codes: list[str]


class StaffAccounts:
    def __init__(self, ctx: ServiceContext, sessions: StaffSessions, vault: TotpVault) -> None:
        self._ctx = ctx
        self._sessions = sessions
        self._vault = vault

    # --- TOTP secrets at rest -------------------------------------------------------------------

    def seal_plain_secrets(self) -> int:
        """Encrypt the TOTP secrets still stored in plain text (written before 0008); the start-up
        step. Idempotent, and safe when several processes start at once: a secret is replaced
        only if it is still the plain text that was read."""
        query = select(Staff.id, Staff.totp_secret).where(Staff.totp_secret.is_not(None))
        # Read first: after the first start there is nothing to do, and no write lock to take.
        with transaction(self._ctx.read) as session:
            plain = [(str(staff_id), str(secret)) for staff_id, secret in session.execute(query)]
        if not plain:
            return 0
        with transaction(self._ctx.write) as session:
            for staff_id, secret in plain:
                session.execute(
                    update(Staff)
                    .where(Staff.id == staff_id, Staff.totp_secret == secret)
                    .values(totp_secret=None, totp_secret_sealed=self._vault.seal(staff_id, secret))
                )
        log.info("staff TOTP secrets encrypted at rest", extra={"count": len(plain)})
        return len(plain)

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
            staff.totp_secret_sealed = None
            staff.totp_enabled_at = None
            staff.totp_last_step = None
            session.execute(delete(StaffRecoveryCode).where(StaffRecoveryCode.staff_id == staff.id))
            revoke_all(session, staff.id, now, "2fa_reset")
            record(session, now, actor, "staff.reset_2fa", staff_object(staff.id))
            return staff

    # --- one's own account ----------------------------------------------------------------------

    def setup_totp(self, principal: StaffPrincipal) -> TotpSetup:
        """A new secret, pending until a code from it confirms it (:meth:`enable_totp`).

        The only time the plain secret leaves the server: stored encrypted, never shown again.
        """
        secret = new_secret()
        sealed = self._vault.seal(principal.staff.id, secret)
        with transaction(self._ctx.write) as session:
            staff = session.get(Staff, principal.staff.id, with_for_update=True)
            if staff is None:
                raise NotFound("no such staff account")
            if staff.totp_enabled_at is not None:
                raise AlreadyExists("TOTP is already enabled; an Admin can reset it")
            staff.totp_secret, staff.totp_secret_sealed = None, sealed
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
            secret = self._vault.secret_of(staff)
            if secret is None:
                raise NotFound("no TOTP secret to confirm: call /staff/me/totp/setup first")
            step = matching_step(secret, otp, now, staff.totp_last_step)
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
