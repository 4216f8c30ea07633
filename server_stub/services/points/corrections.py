"""Store claw-backs (refunds, reversals) and the expiry of granted points."""

from __future__ import annotations

from sqlalchemy import select

from ...db import transaction
from ...points_models import PointsLot
from .common import WalletBase
from .ledger import (
    Account,
    Kind,
    Posting,
    legs_of,
    lock_wallet,
    post,
    take_lots,
)
from .views import (
    CLAWBACKS,
    Outcome,
    balance_of,
    check_amount,
    entry_of,
)


class CorrectionsMixin(WalletBase):
    def claw_back(
        self,
        user_id: str,
        amount: int,
        *,
        kind: Kind,
        external_ref: str,
        actor: str,
        reason: str | None = None,
    ) -> Outcome:
        """Take back the points of a refunded or reversed store purchase, once per purchase.
        The balance never goes negative: what the wallet cannot pay is recorded as owed
        (``shortfall``), blocks spending, and is settled by the next credits."""
        if kind not in CLAWBACKS:
            raise ValueError(f"{kind} is not a claw-back")
        check_amount(amount)
        now = self._now
        with transaction(self._ctx.write) as session:
            wallet = lock_wallet(session, user_id, now)
            done = self._replay(session, user_id, kind, None, external_ref, "")
            if done is not None:
                return Outcome(entry_of(done), balance_of(wallet), replayed=True)
            taken = min(wallet.balance, amount)
            owed = amount - taken
            legs = [(Account.ISSUED, amount)]
            if taken:
                take_lots(session, user_id, taken)
                legs.append((Account.WALLET, -taken))
            if owed:
                legs.append((Account.OWED, -owed))
            tx = post(
                session,
                wallet,
                Posting(kind, amount, legs, actor, reason, None, None, external_ref),
                now,
            )
            return Outcome(entry_of(tx), balance_of(wallet), replayed=False)

    def _expire_lots(self, user_id: str) -> int:
        now = self._now
        with transaction(self._ctx.write) as session:
            wallet = lock_wallet(session, user_id, now)
            lots = session.scalars(
                select(PointsLot)
                .where(
                    PointsLot.user_id == user_id,
                    PointsLot.remaining > 0,
                    PointsLot.expires_at <= now,
                )
                .with_for_update()
            ).all()
            points = sum(lot.remaining for lot in lots)
            if not points:
                return 0
            for lot in lots:
                lot.remaining = 0
            post(
                session,
                wallet,
                Posting(
                    Kind.EXPIRY,
                    points,
                    legs_of(Kind.EXPIRY, points),
                    "system",
                    "granted points reached their expiry",
                ),
                now,
            )
            return points
