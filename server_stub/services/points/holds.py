"""Two-phase spending: hold, commit (all or part), release, and expiry of holds."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from agent.protocol import RESERVATION_TTL_SECONDS

from ...db import transaction
from ...errors import (
    IdempotencyConflict,
    NotFound,
    ReservationConflict,
    ReservationExpired,
    ValidationFailed,
)
from ...points_models import PointsHold, PointsWallet
from .common import WalletBase
from .ledger import (
    Kind,
    Posting,
    legs_of,
    lock_wallet,
    post,
    put_back,
    request_hash,
    take_lots,
)
from .views import (
    HoldView,
    balance_of,
    check_amount,
)


class HoldsMixin(WalletBase):
    def hold(
        self,
        user_id: str,
        amount: int,
        *,
        idempotency_key: str,
        reason: str | None = None,
        ttl: timedelta | None = None,
    ) -> HoldView:
        """Set ``amount`` points aside (wallet → held) until :meth:`commit_hold`,
        :meth:`release_hold` or the hold's expiry (the usage reservations' TTL by default)."""
        check_amount(amount)
        now = self._now
        digest = request_hash(amount=amount, reason=reason)
        with transaction(self._ctx.write) as session:
            wallet = lock_wallet(session, user_id, now)
            found = session.scalar(
                select(PointsHold).where(
                    PointsHold.user_id == user_id, PointsHold.idempotency_key == idempotency_key
                )
            )
            if found is not None:
                if found.request_hash != digest:
                    raise IdempotencyConflict("the idempotency key was used for another hold")
                return self._hold_view(found, wallet, replayed=True)
            self._require(wallet, amount)
            taken = take_lots(session, user_id, amount)
            hold = PointsHold(
                user_id=user_id,
                amount=amount,
                used=0,
                state="held",
                reason=reason,
                idempotency_key=idempotency_key,
                request_hash=digest,
                lots=taken,
                expires_at=now + (ttl or timedelta(seconds=RESERVATION_TTL_SECONDS)),
                created_at=now,
            )
            session.add(hold)
            session.flush()
            post(
                session,
                wallet,
                Posting(
                    Kind.HOLD,
                    amount,
                    legs_of(Kind.HOLD, amount),
                    f"user:{user_id}",
                    reason,
                    external_ref=hold.id,
                ),
                now,
            )
            return self._hold_view(hold, wallet)

    def commit_hold(self, user_id: str, hold_id: str, used: int | None = None) -> HoldView:
        """Spend ``used`` points of the hold (all by default); the rest goes back to the wallet.
        Committing again with the same ``used`` replays; a released or expired hold conflicts."""
        now = self._now
        with transaction(self._ctx.write) as session:
            wallet = lock_wallet(session, user_id, now)
            hold = self._locked_hold(session, user_id, hold_id)
            used = hold.amount if used is None else used
            if not 0 <= used <= hold.amount:
                raise ValidationFailed(f"used must be between 0 and the hold's {hold.amount}")
            if hold.state == "committed" and hold.used == used:
                return self._hold_view(hold, wallet, replayed=True)
            self._require_open(hold, now)
            if used:
                post(
                    session,
                    wallet,
                    Posting(
                        Kind.HOLD_COMMIT,
                        used,
                        legs_of(Kind.HOLD_COMMIT, used),
                        f"user:{user_id}",
                        hold.reason,
                        external_ref=hold.id,
                    ),
                    now,
                )
            self._return_rest(session, wallet, hold, hold.amount - used, f"user:{user_id}", now)
            hold.state, hold.used, hold.settled_at = "committed", used, now
            return self._hold_view(hold, wallet)

    def release_hold(self, user_id: str, hold_id: str) -> HoldView:
        """Put the hold's points back into the wallet (idempotent)."""
        now = self._now
        with transaction(self._ctx.write) as session:
            wallet = lock_wallet(session, user_id, now)
            hold = self._locked_hold(session, user_id, hold_id)
            if hold.state in ("released", "expired"):
                return self._hold_view(hold, wallet, replayed=True)
            self._require_open(hold, now)
            self._return_rest(session, wallet, hold, hold.amount, f"user:{user_id}", now)
            hold.state, hold.settled_at = "released", now
            return self._hold_view(hold, wallet)

    def _locked_hold(self, session: Session, user_id: str, hold_id: str) -> PointsHold:
        hold = session.get(PointsHold, hold_id, with_for_update=True)
        if hold is None or hold.user_id != user_id:
            raise NotFound("no such hold")
        return hold

    @staticmethod
    def _require_open(hold: PointsHold, now: datetime) -> None:
        if hold.state == "expired" or (hold.state == "held" and hold.expires_at <= now):
            raise ReservationExpired("the hold expired; its points went back to the wallet")
        if hold.state != "held":
            raise ReservationConflict(f"the hold is already {hold.state}")

    @staticmethod
    def _return_rest(
        session: Session,
        wallet: PointsWallet,
        hold: PointsHold,
        points: int,
        actor: str,
        now: datetime,
    ) -> None:
        """Put ``points`` of the hold back, into the lots they came from (last taken first:
        the spent part is the earliest-expiring)."""
        if points <= 0:
            return
        back: list[list[object]] = []
        left = points
        for lot_id, part in reversed(hold.lots):
            if left == 0:
                break
            give = min(int(str(part)), left)
            back.append([lot_id, give])
            left -= give
        put_back(session, back)
        post(
            session,
            wallet,
            Posting(
                Kind.HOLD_RELEASE,
                points,
                legs_of(Kind.HOLD_RELEASE, points),
                actor,
                hold.reason,
                external_ref=hold.id,
            ),
            now,
        )

    @staticmethod
    def _hold_view(hold: PointsHold, wallet: PointsWallet, *, replayed: bool = False) -> HoldView:
        return HoldView(
            hold.id,
            hold.amount,
            hold.used,
            hold.state,
            hold.expires_at,
            balance_of(wallet),
            replayed,
        )

    def _expire_hold(self, user_id: str, hold_id: str) -> int:
        now = self._now
        with transaction(self._ctx.write) as session:
            wallet = lock_wallet(session, user_id, now)
            hold = self._locked_hold(session, user_id, hold_id)
            if hold.state != "held" or hold.expires_at > now:
                return 0  # settled meanwhile
            self._return_rest(session, wallet, hold, hold.amount, "system", now)
            hold.state, hold.settled_at = "expired", now
            return 1
