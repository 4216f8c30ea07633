"""The customer's profile: who they are, their plan, subscription and points, in one read; and
the change of e-mail or password, confirmed by the current password.

A new password ends every other session of the account in the same transaction (their refresh
families are revoked and the session cache is told), so whoever knew the old password is out;
the session that made the change stays signed in.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..db import transaction
from ..errors import AlreadyExists, InvalidCredentials, NotFound
from ..models import AuthSession, User
from ..passwords import hash_password, verify_password
from ..session_bus import SessionBus
from .auth import Principal, normalise_email
from .billing.common import SubscriptionView
from .billing.service import BillingService
from .context import ServiceContext
from .periods import active_plan
from .points.service import PointsService
from .points.views import Balance
from .session_cache import session_key


@dataclass(frozen=True)
class Profile:
    id: str
    email: str
    created_at: datetime
    plan: str | None
    points: Balance
    subscription: SubscriptionView | None


class ProfileService:
    def __init__(
        self,
        ctx: ServiceContext,
        sessions: SessionBus,
        billing: BillingService,
        points: PointsService,
    ) -> None:
        self._ctx = ctx
        self._sessions = sessions
        self._billing = billing
        self._points = points

    def profile(self, user_id: str) -> Profile:
        now = self._ctx.clock.now()
        with transaction(self._ctx.read) as session:
            user = session.get(User, user_id)
            if user is None:
                raise NotFound("no such user")
            active = active_plan(session, user_id, now)
            plan = active.plan.name if active is not None else None
            email, created_at = user.email, user.created_at
        return Profile(
            user_id,
            email,
            created_at,
            plan,
            self._points.balance(user_id),
            self._billing.status(user_id),
        )

    def update(
        self,
        principal: Principal,
        current_password: str,
        *,
        email: str | None = None,
        new_password: str | None = None,
    ) -> Profile:
        user_id = principal.user.id
        with transaction(self._ctx.read) as session:
            user = session.get(User, user_id)
            stored = user.password_hash if user is not None else None
        if not verify_password(stored, current_password):
            raise InvalidCredentials("the current password is wrong")
        # Slow (Argon2id): outside the transaction, like registration.
        new_hash = hash_password(new_password) if new_password is not None else None
        now = self._ctx.clock.now()
        try:
            with transaction(self._ctx.write) as session:
                user = session.get(User, user_id, with_for_update=True)
                if user is None:
                    raise NotFound("no such user")
                if email is not None:
                    wanted = normalise_email(email)
                    taken = session.scalar(
                        select(User.id).where(User.email == wanted, User.id != user_id)
                    )
                    if taken is not None:
                        raise AlreadyExists("an account with this e-mail already exists")
                    user.email = wanted
                if new_hash is not None:
                    user.password_hash = new_hash
                    self._end_other_sessions(session, principal, now)
        except IntegrityError as exc:  # a concurrent registration took the e-mail
            raise AlreadyExists("an account with this e-mail already exists") from exc
        return self.profile(user_id)

    def _end_other_sessions(self, session: Session, principal: Principal, now: datetime) -> None:
        others = list(
            session.scalars(
                select(AuthSession.id).where(
                    AuthSession.user_id == principal.user.id,
                    AuthSession.id != principal.session_id,
                    AuthSession.revoked_at.is_(None),
                )
            )
        )
        if not others:
            return
        session.execute(
            update(AuthSession)
            .where(AuthSession.id.in_(others))
            .values(revoked_at=now, revoked_reason="password_changed")
        )
        self._sessions.announce(session, [session_key(i) for i in sorted(others)])
