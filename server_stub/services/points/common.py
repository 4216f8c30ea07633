"""What every part of the points wallet shares: the clock, replays by key or store purchase,
the spendability check, and settling what is owed."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from ...errors import IdempotencyConflict, InsufficientPoints
from ...points_models import PointsTransaction, PointsWallet
from ..context import ServiceContext
from .ledger import (
    Kind,
    Posting,
    by_external_ref,
    keyed,
    legs_of,
    post,
    take_lots,
)


class WalletBase:
    def __init__(self, ctx: ServiceContext) -> None:
        self._ctx = ctx

    @property
    def _now(self) -> datetime:
        return self._ctx.clock.now()

    def _replay(
        self,
        session: Session,
        user_id: str,
        kind: Kind,
        key: str | None,
        external_ref: str | None,
        digest: str,
    ) -> PointsTransaction | None:
        if external_ref is not None:
            done = by_external_ref(session, kind, external_ref)
            if done is not None and done.user_id != user_id:
                raise IdempotencyConflict("this store purchase was applied to another account")
            if done is not None:
                return done
        if key is not None:
            done = keyed(session, user_id, key)
            if done is not None and (done.kind != kind or done.request_hash != digest):
                raise IdempotencyConflict("the idempotency key was used for another request")
            return done
        return None

    @staticmethod
    def _require(wallet: PointsWallet, amount: int) -> None:
        if wallet.shortfall > 0:
            raise InsufficientPoints(
                f"{wallet.shortfall} points are owed after a store refund; "
                "nothing can be spent until they are settled",
                shortfall=wallet.shortfall,
            )
        if wallet.balance < amount:
            raise InsufficientPoints(
                f"{amount} points asked, {wallet.balance} available", balance=wallet.balance
            )

    def _settle_shortfall(
        self, session: Session, wallet: PointsWallet, actor: str, now: datetime
    ) -> None:
        settle = min(wallet.shortfall, wallet.balance)
        if settle <= 0:
            return
        take_lots(session, wallet.user_id, settle)
        post(
            session,
            wallet,
            Posting(
                Kind.SETTLEMENT,
                settle,
                legs_of(Kind.SETTLEMENT, settle),
                actor,
                "settles points owed after a store refund",
            ),
            now,
        )
