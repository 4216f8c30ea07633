"""The points wallet (docs/points.md): credits, spends, two-phase holds, store claw-backs,
operator adjustments and expiry, each one transaction of the double-entry ledger (ledger.py).

Each public call is one write transaction that first locks the user's wallet; the answer is
built from what was committed, so a client never sees a balance the server does not have.
Idempotency: a spend, hold or adjustment carries the caller's key (one outcome per key of a
user: the same request again replays it, another request under it is a conflict); a store
credit or claw-back is keyed by the store's purchase id, across all users.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ...db import transaction
from ...errors import (
    InsufficientPoints,
    ValidationFailed,
)
from ...points_models import PointsHold, PointsLot, PointsTransaction, PointsWallet
from ..audit import record
from .corrections import CorrectionsMixin
from .fast_spend import Declined, fast_spend
from .history import HistoryPage, history_page, wallet_object
from .holds import HoldsMixin
from .ledger import (
    CREDITS,
    Kind,
    Posting,
    add_lot,
    legs_of,
    lock_wallet,
    post,
    request_hash,
    take_lots,
)
from .topup import TopupMixin
from .views import (
    Balance,
    Outcome,
    balance_of,
    check_amount,
    entry_of,
)


class PointsService(HoldsMixin, CorrectionsMixin, TopupMixin):
    # --- reading -----------------------------------------------------------------------------

    def balance(self, user_id: str) -> Balance:
        with self._ctx.read() as session:
            wallet = session.get(PointsWallet, user_id)
            return balance_of(wallet) if wallet else Balance(0, 0, 0)

    # --- credits -----------------------------------------------------------------------------

    def credit(
        self,
        user_id: str,
        amount: int,
        *,
        kind: Kind,
        actor: str,
        reason: str | None = None,
        expires_at: datetime | None = None,
        idempotency_key: str | None = None,
        external_ref: str | None = None,
        audit: str | None = None,
    ) -> Outcome:
        """Put ``amount`` new points into the wallet (a grant, a store purchase keyed by its
        ``external_ref``, or a positive adjustment), as a lot that may expire. What the user
        owes after a store refund is settled first, from the same credit."""
        if kind not in CREDITS:
            raise ValueError(f"{kind} is not a credit")
        check_amount(amount)
        now = self._now
        if expires_at is not None and expires_at <= now:
            raise ValidationFailed("a credit's expiry must be in the future")
        digest = request_hash(kind=kind, amount=amount, expires_at=expires_at, reason=reason)
        posting = Posting(
            kind,
            amount,
            legs_of(kind, amount),
            actor,
            reason,
            idempotency_key,
            digest if idempotency_key else None,
            external_ref,
            expires_at,
        )
        try:
            return self._credit(user_id, posting, now, audit)
        except IntegrityError:
            # Another account claimed the same store purchase at the same moment (the wallet
            # locks are per user): its row has committed now, and the replay check refuses.
            return self._credit(user_id, posting, now, audit)

    def _credit(self, user_id: str, posting: Posting, now: datetime, audit: str | None) -> Outcome:
        with transaction(self._ctx.write) as session:
            wallet = lock_wallet(session, user_id, now)
            done = self._replay(
                session,
                user_id,
                posting.kind,
                posting.idempotency_key,
                posting.external_ref,
                posting.request_hash or "",
            )
            if done is not None:
                return Outcome(entry_of(done), balance_of(wallet), replayed=True)
            tx = post(session, wallet, posting, now)
            if audit is not None:
                self._audit(session, tx, audit, now)
            add_lot(session, tx, posting.amount, posting.expires_at, now)
            session.flush()
            self._settle_shortfall(session, wallet, posting.actor, now)
            return Outcome(entry_of(tx), balance_of(wallet), replayed=False)

    # --- spending ----------------------------------------------------------------------------

    def spend(
        self,
        user_id: str,
        amount: int,
        *,
        idempotency_key: str,
        reason: str | None = None,
        kind: Kind = Kind.SPEND,
    ) -> Outcome:
        """Take ``amount`` points out of the wallet, earliest-expiring first, once per key.
        Refused (``insufficient_points``, nothing booked) when the wallet cannot pay or the
        user owes points after a store refund."""
        check_amount(amount)
        now = self._now
        digest = request_hash(kind=kind, amount=amount, reason=reason)
        try:
            return fast_spend(
                self._ctx,
                user_id,
                amount,
                kind=kind,
                key=idempotency_key,
                digest=digest,
                reason=reason,
                now=now,
            )
        except Declined:
            pass  # not the common case: decided below, with the same rules
        with transaction(self._ctx.write) as session:
            wallet = lock_wallet(session, user_id, now)
            done = self._replay(session, user_id, kind, idempotency_key, None, digest)
            if done is not None:
                return Outcome(entry_of(done), balance_of(wallet), replayed=True)
            self._require(wallet, amount)
            take_lots(session, user_id, amount)
            tx = post(
                session,
                wallet,
                Posting(
                    kind,
                    amount,
                    legs_of(kind, amount),
                    f"user:{user_id}",
                    reason,
                    idempotency_key,
                    digest,
                ),
                now,
            )
            return Outcome(entry_of(tx), balance_of(wallet), replayed=False)

    def adjust(
        self, user_id: str, delta: int, *, reason: str, actor: str, idempotency_key: str
    ) -> Outcome:
        """An operator's correction: ``delta`` points in (positive) or out (negative, never
        below zero). A reason is required; it is booked like any other change."""
        if not reason.strip():
            raise ValidationFailed("an adjustment needs a reason")
        if delta > 0:
            return self.credit(
                user_id,
                delta,
                kind=Kind.ADJUSTMENT,
                actor=actor,
                reason=reason,
                idempotency_key=idempotency_key,
                audit="points.adjust",
            )
        amount = -delta
        check_amount(amount)
        now = self._now
        digest = request_hash(kind=Kind.ADJUSTMENT, amount=delta, reason=reason)
        with transaction(self._ctx.write) as session:
            wallet = lock_wallet(session, user_id, now)
            done = self._replay(session, user_id, Kind.ADJUSTMENT, idempotency_key, None, digest)
            if done is not None:
                return Outcome(entry_of(done), balance_of(wallet), replayed=True)
            if wallet.balance < amount:
                raise InsufficientPoints(
                    f"cannot take {amount} points, {wallet.balance} available",
                    balance=wallet.balance,
                )
            take_lots(session, user_id, amount)
            tx = post(
                session,
                wallet,
                Posting(
                    Kind.ADJUSTMENT,
                    amount,
                    legs_of(Kind.ADJUSTMENT, amount, debit=True),
                    actor,
                    reason,
                    idempotency_key,
                    digest,
                ),
                now,
            )
            self._audit(session, tx, "points.adjust", now)
            return Outcome(entry_of(tx), balance_of(wallet), replayed=False)

    @staticmethod
    def _audit(session: Session, tx: PointsTransaction, action: str, now: datetime) -> None:
        """An operator's change goes into the audit log with the ledger's transaction."""
        record(
            session,
            now,
            tx.actor,
            action,
            wallet_object(tx.user_id),
            {"transaction": tx.id, "points": tx.wallet_delta, "reason": tx.reason},
        )

    def history(
        self,
        user_id: str,
        *,
        limit: int = 50,
        cursor: str | None = None,
        kinds: frozenset[str] = frozenset(),
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> HistoryPage:
        """The user's changes, newest first, ``limit`` a page (see :mod:`.history`)."""
        with self._ctx.read() as session:
            return history_page(session, user_id, limit, cursor, kinds, since, until)

    def expire(self, limit: int = 500) -> tuple[int, int]:
        """The sweeper's pass: release holds past their TTL and book expired lots' points as
        ``expiry``. Returns (holds released, points expired)."""
        now = self._now
        with self._ctx.read() as session:
            holds = session.execute(
                select(PointsHold.id, PointsHold.user_id)
                .where(PointsHold.state == "held", PointsHold.expires_at <= now)
                .limit(limit)
            ).all()
            users = session.scalars(
                select(PointsLot.user_id)
                .where(PointsLot.remaining > 0, PointsLot.expires_at <= now)
                .group_by(PointsLot.user_id)
                .limit(limit)
            ).all()
        released = sum(self._expire_hold(user, hold) for hold, user in holds)
        expired = sum(self._expire_lots(user) for user in users)
        return released, expired

    # --- invariants (tests, reports) ---------------------------------------------------------

    def ledger_sums(self, user_id: str) -> dict[str, int]:
        """Each of the user's accounts summed over the ledger (what the cache must equal)."""
        from ...points_models import PointsEntry

        with self._ctx.read() as session:
            rows = session.execute(
                select(PointsEntry.account, func.sum(PointsEntry.amount))
                .where(PointsEntry.user_id == user_id)
                .group_by(PointsEntry.account)
            ).all()
            lots = session.scalar(
                select(func.coalesce(func.sum(PointsLot.remaining), 0)).where(
                    PointsLot.user_id == user_id
                )
            )
        sums = {str(account): int(total) for account, total in rows}
        sums["lots"] = int(lots or 0)
        return sums
