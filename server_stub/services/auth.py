"""Accounts, devices, sessions and tokens: the rules behind ``/auth`` and ``/devices``."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from agent.protocol import REFRESH_TOKEN_TTL_SECONDS, fingerprint_agreement, same_device

from ..db import transaction
from ..errors import (
    AlreadyExists,
    DeviceLimit,
    Forbidden,
    InvalidCredentials,
    NotFound,
    TokenExpired,
    TokenInvalid,
)
from ..models import AuthSession, Device, Plan, RefreshToken, User
from ..passwords import hash_password, needs_rehash, verify_password
from ..session_bus import SessionBus
from ..tokens import AccessClaims, fingerprint_hash, opaque_token, token_digest
from .context import ServiceContext
from .periods import active_plan, subscribe
from .session_cache import LiveSession, device_key, session_key

log = logging.getLogger("tgflow.server.auth")

#: Devices allowed to a user without an active plan.
DEVICES_WITHOUT_PLAN = 1
#: The reply to a refresh token we never issued and to one presented by another device alike.
_NOT_A_REFRESH_TOKEN = "this refresh token is not valid; log in again"


@dataclass(frozen=True)
class IssuedTokens:
    user: User
    access_token: str
    access_exp: int
    refresh_token: str
    refresh_expires_at: datetime


@dataclass(frozen=True, slots=True)
class UserRef:
    id: str


@dataclass(frozen=True, slots=True)
class DeviceRef:
    id: str
    #: The fingerprint stored when the session was last looked up (a drifted device's latest).
    fingerprint: str


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller of a request (plain values: it may come from the cache)."""

    user: UserRef
    device: DeviceRef
    session_id: str
    claims: AccessClaims


def normalise_email(email: str) -> str:
    return email.strip().lower()


def max_devices(session: Session, user_id: str, now: datetime) -> int:
    active = active_plan(session, user_id, now)
    return active.plan.max_devices if active else DEVICES_WITHOUT_PLAN


# Hot-path statements are built once: building them per call costs more than running them.
_COUNT_DEVICES = (
    select(func.count())
    .select_from(Device)
    .where(Device.user_id == bindparam("user_id"), Device.revoked_at.is_(None))
)
_PRINCIPAL = (
    select(
        AuthSession.revoked_at,
        Device.id,
        Device.fingerprint,
        Device.revoked_at,
        User.id,
        User.disabled_at,
    )
    .join(Device, Device.id == AuthSession.device_id)
    .join(User, User.id == AuthSession.user_id)
    .where(AuthSession.id == bindparam("session_id"))
)


def count_devices(session: Session, user_id: str) -> int:
    return session.scalar(_COUNT_DEVICES, {"user_id": user_id}) or 0


class AuthService:
    def __init__(self, ctx: ServiceContext, sessions: SessionBus) -> None:
        self._ctx = ctx
        self._sessions = sessions
        self._live = sessions.cache

    def _record_fingerprint(self, session: Session, device: Device, fingerprint: str) -> None:
        """Keep the latest fingerprint of a device recognised with one component changed."""
        if device.fingerprint != fingerprint:
            log.info("device fingerprint changed; recorded", extra={"device_id": device.id})
            device.fingerprint = fingerprint
            # Cached sessions of the device hold the old one, which its leases must not carry.
            self._sessions.announce(session, [device_key(device.id)])

    # --- register / login -----------------------------------------------------------------------

    def register(
        self, email: str, password: str, fingerprint: str, device_name: str | None
    ) -> IssuedTokens:
        email = normalise_email(email)
        password_hash = hash_password(password)  # slow: outside the transaction
        now = self._ctx.clock.now()
        try:
            with transaction(self._ctx.write) as session:
                if session.scalar(select(User.id).where(User.email == email)) is not None:
                    raise AlreadyExists("an account with this e-mail already exists")
                user = User(email=email, password_hash=password_hash, created_at=now)
                session.add(user)
                session.flush()
                plan = session.scalar(
                    select(Plan).where(Plan.name == self._ctx.settings.default_plan)
                )
                if plan is not None:
                    subscribe(session, user.id, plan, now)
                device = self._bind_device(session, user, fingerprint, device_name, now)
                return self._start_session(session, user, device, now)
        except IntegrityError as exc:  # a concurrent registration of the same e-mail won
            raise AlreadyExists("an account with this e-mail already exists") from exc

    def login(
        self, email: str, password: str, fingerprint: str, device_name: str | None
    ) -> IssuedTokens:
        email = normalise_email(email)
        with transaction(self._ctx.read) as session:
            user = session.scalar(select(User).where(User.email == email))
        if not verify_password(user.password_hash if user else None, password) or user is None:
            raise InvalidCredentials("wrong e-mail or password")
        if user.disabled_at is not None:
            raise Forbidden("this account is disabled")
        new_hash = hash_password(password) if needs_rehash(user.password_hash) else None
        now = self._ctx.clock.now()
        with transaction(self._ctx.write) as session:
            user = session.get(User, user.id, with_for_update=True) or user
            if new_hash:
                user.password_hash = new_hash
            device = self._bind_device(session, user, fingerprint, device_name, now)
            return self._start_session(session, user, device, now)

    def _bind_device(
        self, session: Session, user: User, fingerprint: str, name: str | None, now: datetime
    ) -> Device:
        # Locking the user row serialises concurrent logins, so two new devices can never
        # both fit into the last free slot.
        session.execute(select(User.id).where(User.id == user.id).with_for_update())
        device = session.scalar(
            select(Device).where(
                Device.user_id == user.id,
                Device.fingerprint == fingerprint,
                Device.revoked_at.is_(None),
            )
        ) or self._drifted_device(session, user.id, fingerprint)
        if device is not None:
            self._record_fingerprint(session, device, fingerprint)
            device.last_seen_at = now
            if name:
                device.name = name
            return device
        limit = max_devices(session, user.id, now)
        if count_devices(session, user.id) >= limit:
            raise DeviceLimit(
                f"this account may use {limit} device(s); deactivate one to use this device",
                devices_max=limit,
            )
        device = Device(
            user_id=user.id, fingerprint=fingerprint, name=name, created_at=now, last_seen_at=now
        )
        session.add(device)
        session.flush()
        return device

    @staticmethod
    def _drifted_device(session: Session, user_id: str, fingerprint: str) -> Device | None:
        """The user's live device that ``fingerprint`` matches by majority (one value changed).

        A user has a handful of devices at most, so they are compared in Python. Should two
        match, the one agreeing on more components wins, then the one seen last.
        """
        devices = session.scalars(
            select(Device).where(Device.user_id == user_id, Device.revoked_at.is_(None))
        )
        matches = [device for device in devices if same_device(device.fingerprint, fingerprint)]
        if not matches:
            return None
        return max(
            matches,
            key=lambda device: (
                fingerprint_agreement(device.fingerprint, fingerprint)[0],
                device.last_seen_at,
                device.id,
            ),
        )

    def _start_session(
        self, session: Session, user: User, device: Device, now: datetime
    ) -> IssuedTokens:
        auth_session = AuthSession(user_id=user.id, device_id=device.id, created_at=now)
        session.add(auth_session)
        session.flush()
        return self._issue(session, user, device, auth_session.id, now)

    def _issue(
        self, session: Session, user: User, device: Device, session_id: str, now: datetime
    ) -> IssuedTokens:
        refresh = opaque_token()
        refresh_exp = now + timedelta(seconds=REFRESH_TOKEN_TTL_SECONDS)
        session.add(
            RefreshToken(
                session_id=session_id,
                token_hash=token_digest(refresh),
                created_at=now,
                expires_at=refresh_exp,
            )
        )
        access, exp = self._ctx.tokens.issue_access_token(
            user_id=user.id,
            device=fingerprint_hash(device.fingerprint),
            session_id=session_id,
            now=now,
            ttl=timedelta(seconds=self._ctx.settings.access_token_ttl_seconds),
        )
        return IssuedTokens(user, access, exp, refresh, refresh_exp)

    # --- refresh / logout -----------------------------------------------------------------------

    def refresh(self, refresh_token: str, fingerprint: str) -> IssuedTokens:
        now = self._ctx.clock.now()
        reused = False
        with transaction(self._ctx.write) as session:
            row = session.execute(
                select(RefreshToken, AuthSession, Device, User)
                .join(AuthSession, AuthSession.id == RefreshToken.session_id)
                .join(Device, Device.id == AuthSession.device_id)
                .join(User, User.id == AuthSession.user_id)
                .where(RefreshToken.token_hash == token_digest(refresh_token))
                .with_for_update(of=RefreshToken)
            ).first()
            if row is None:
                raise TokenInvalid(_NOT_A_REFRESH_TOKEN)
            token, auth_session, device, user = row
            if token.used_at is not None:
                # A used token came back: someone holds a copy. End the whole family, whatever
                # fingerprint came with it (a thief's fingerprint is not the owner's) and with
                # the same reply for every replay, so the reply tells no one more than that.
                if auth_session.revoked_at is None:
                    auth_session.revoked_at = now
                    auth_session.revoked_reason = "refresh_reuse"
                    self._sessions.announce(session, [session_key(auth_session.id)])
                reused = True
            elif not same_device(device.fingerprint, fingerprint):
                # Not spent, so nothing says it was copied; refused like a token we never issued.
                raise TokenInvalid(_NOT_A_REFRESH_TOKEN)
            elif auth_session.revoked_at is not None or device.revoked_at is not None:
                raise TokenInvalid("this session has ended; log in again")
            elif token.expires_at <= now:
                raise TokenExpired("the refresh token has expired; log in again")
            elif user.disabled_at is not None:
                raise Forbidden("this account is disabled")
            else:
                marked = session.execute(
                    update(RefreshToken)
                    .where(RefreshToken.id == token.id, RefreshToken.used_at.is_(None))
                    .values(used_at=now)
                )
                if marked.rowcount != 1:  # type: ignore[attr-defined]
                    raise TokenInvalid("this refresh token was already used")
                self._record_fingerprint(session, device, fingerprint)
                device.last_seen_at = now
                return self._issue(session, user, device, auth_session.id, now)
        if reused:
            log.warning("refresh token reuse; session revoked", extra={"user_id": user.id})
        raise TokenInvalid("this refresh token was already used; the session is revoked")

    def logout(self, principal: Principal, refresh_token: str | None) -> None:
        now = self._ctx.clock.now()
        with transaction(self._ctx.write) as session:
            ids = {principal.session_id}
            if refresh_token:
                other = session.scalar(
                    select(RefreshToken.session_id)
                    .join(AuthSession, AuthSession.id == RefreshToken.session_id)
                    .where(
                        RefreshToken.token_hash == token_digest(refresh_token),
                        AuthSession.user_id == principal.user.id,
                    )
                )
                if other:
                    ids.add(other)
            session.execute(
                update(AuthSession)
                .where(AuthSession.id.in_(ids), AuthSession.revoked_at.is_(None))
                .values(revoked_at=now, revoked_reason="logout")
            )
            self._sessions.announce(session, [session_key(i) for i in sorted(ids)])

    # --- access tokens --------------------------------------------------------------------------

    def verify_signature(self, token: str) -> AccessClaims:
        """Check an access token's signature, type and times (no database)."""
        return self._ctx.tokens.verify_access_token(token, now=self._ctx.clock.now())

    def authenticate(self, token: str, verified: AccessClaims | None = None) -> Principal:
        """The caller behind an access token whose session, device and user are still live.

        ``verified``: the token's claims when its signature was checked already (the rate
        limiter does). A session found live lately answers from memory, without I/O; otherwise
        one short query (see :mod:`.session_cache` for how an ended session is forgotten).
        """
        claims = verified or self.verify_signature(token)
        live = self._live.get(claims.session_id)
        if live is not None:
            self._ctx.metrics.session_hits.inc()
        else:
            self._ctx.metrics.session_misses.inc()
            live = self._look_up(claims.session_id)
        # The signed session id binds the token to its device row. The ``device`` claim is the
        # fingerprint hash at issue time and is not compared with the stored fingerprint, which a
        # later login may have updated after one component changed: the device's other tokens
        # stay valid until they expire.
        if live.user_id != claims.user_id:
            raise TokenInvalid("the access token does not match its session")
        return Principal(
            user=UserRef(live.user_id),
            device=DeviceRef(live.device_id, live.fingerprint),
            session_id=live.session_id,
            claims=claims,
        )

    def _look_up(self, session_id: str) -> LiveSession:
        generation = self._live.generation
        with transaction(self._ctx.read) as session:
            row = session.execute(_PRINCIPAL, {"session_id": session_id}).first()
        if row is None:
            raise TokenInvalid("unknown session")
        session_revoked, device_id, fingerprint, device_revoked, user_id, user_disabled = row
        if session_revoked is not None or device_revoked is not None:
            raise TokenInvalid("this session has ended; log in again")
        if user_disabled is not None:
            raise Forbidden("this account is disabled")
        live = LiveSession(session_id, user_id, device_id, fingerprint)
        self._live.put(live, generation)
        return live

    # --- devices --------------------------------------------------------------------------------

    def list_devices(self, principal: Principal) -> tuple[list[Device], int]:
        with transaction(self._ctx.read) as session:
            devices = list(
                session.scalars(
                    select(Device)
                    .where(Device.user_id == principal.user.id, Device.revoked_at.is_(None))
                    .order_by(Device.created_at, Device.id)
                )
            )
            return devices, max_devices(session, principal.user.id, self._ctx.clock.now())

    def deactivate_device(self, principal: Principal, device_id: str) -> None:
        now = self._ctx.clock.now()
        with transaction(self._ctx.write) as session:
            device = session.scalar(
                select(Device).where(
                    Device.id == device_id,
                    Device.user_id == principal.user.id,
                    Device.revoked_at.is_(None),
                )
            )
            if device is None:
                raise NotFound("no such device on this account")
            device.revoked_at = now
            session.execute(
                update(AuthSession)
                .where(AuthSession.device_id == device.id, AuthSession.revoked_at.is_(None))
                .values(revoked_at=now, revoked_reason="device_deactivated")
            )
            self._sessions.announce(session, [device_key(device.id)])

    # --- operator -------------------------------------------------------------------------------

    def create_user(self, email: str, password: str, plan_name: str | None) -> User:
        email = normalise_email(email)
        password_hash = hash_password(password)
        now = self._ctx.clock.now()
        with transaction(self._ctx.write) as session:
            user = session.scalar(select(User).where(User.email == email))
            if user is None:
                user = User(email=email, password_hash=password_hash, created_at=now)
                session.add(user)
                session.flush()
            else:
                user.password_hash = password_hash
            name = plan_name or self._ctx.settings.default_plan
            plan = session.scalar(select(Plan).where(Plan.name == name))
            if plan is None:
                raise NotFound(f"no plan named {name!r}")
            subscribe(session, user.id, plan, now)
            return user
