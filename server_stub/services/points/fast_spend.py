"""The spend's hot path in plain Core statements (a spend is six of them), like the usage
reservations': the ORM's unit of work cost two thirds of a spend's time
(docs/BENCHMARKS-history.md).

It decides only the common case — the wallet can pay, owes nothing, and the key is new — and
declines everything else (:class:`Declined`, its transaction rolled back, nothing booked), which
the ORM path (service.py) then answers exactly as before: a replay, a conflict, a refusal. The
conditional ``UPDATE`` of the wallet is the lock every other call takes first, so the two paths
serialise on it like any two calls do.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, insert, select, update

from ...db import write_connection
from ...models import new_id
from ...points_models import PointsEntry, PointsLot, PointsTransaction, PointsWallet
from ..context import ServiceContext
from .ledger import Kind, legs_of
from .views import Balance, Entry, Outcome

_W = cast(Table, PointsWallet.__table__)
_T = cast(Table, PointsTransaction.__table__)
_E = cast(Table, PointsEntry.__table__)
_L = cast(Table, PointsLot.__table__)


# Built once: a statement built per call spends more time on its cache key than on SQLite.
_PAY = (
    update(_W)
    .where(
        _W.c.user_id == bindparam("b_user"),
        _W.c.balance >= bindparam("b_amount"),
        _W.c.shortfall == 0,
    )
    .values(balance=_W.c.balance - bindparam("b_amount"), updated_at=bindparam("b_now"))
    .returning(_W.c.balance, _W.c.held, _W.c.shortfall)
)
_USED = select(_T.c.id).where(
    _T.c.user_id == bindparam("user_id"), _T.c.idempotency_key == bindparam("key")
)
_LOTS = (
    select(_L.c.id, _L.c.remaining)
    .where(_L.c.user_id == bindparam("user_id"), _L.c.remaining > 0)
    .order_by(_L.c.expires_at.is_(None), _L.c.expires_at, _L.c.created_at, _L.c.id)
    .with_for_update()
)
_SET_LOT = update(_L).where(_L.c.id == bindparam("b_lot")).values(remaining=bindparam("b_left"))
_INSERT_TX = insert(_T)
_INSERT_ENTRIES = insert(_E)


class Declined(Exception):
    """Not the common case: let the ORM path decide (nothing was booked)."""


def fast_spend(
    ctx: ServiceContext,
    user_id: str,
    amount: int,
    *,
    kind: Kind,
    key: str,
    digest: str,
    reason: str | None,
    now: datetime,
) -> Outcome:
    with write_connection(ctx.write) as conn:
        paid = conn.execute(_PAY, {"b_user": user_id, "b_amount": amount, "b_now": now}).first()
        if paid is None:
            raise Declined  # no wallet yet, too few points, or points owed
        used = conn.execute(_USED, {"user_id": user_id, "key": key}).first()
        if used is not None:
            raise Declined  # a replay or a conflict: the rollback undoes the debit
        _take(conn, user_id, amount)
        tx_id = new_id()
        conn.execute(
            _INSERT_TX,
            {
                "id": tx_id,
                "user_id": user_id,
                "kind": kind.value,
                "amount": amount,
                "reason": reason,
                "idempotency_key": key,
                "request_hash": digest,
                "external_ref": None,
                "actor": f"user:{user_id}",
                "wallet_delta": -amount,
                "balance_after": paid.balance,
                "messages": None,
                "expires_at": None,
                "created_at": now,
            },
        )
        conn.execute(
            _INSERT_ENTRIES,
            # The legs the ORM path books for this kind (the ledger's one table of moves).
            [
                {"transaction_id": tx_id, "user_id": user_id, "account": account.value, "amount": n}
                for account, n in legs_of(kind, amount)
            ],
        )
    entry = Entry(tx_id, kind.value, -amount, paid.balance, reason, None, None, now)
    return Outcome(entry, Balance(paid.balance, paid.held, paid.shortfall), replayed=False)


def _take(conn: Any, user_id: str, amount: int) -> None:
    """ledger.take_lots in Core: earliest expiry first, no expiry last, then oldest."""
    lots = conn.execute(_LOTS, {"user_id": user_id}).all()
    left = amount
    for lot_id, remaining in lots:
        if left == 0:
            break
        part = min(remaining, left)
        left -= part
        conn.execute(_SET_LOT, {"b_lot": lot_id, "b_left": remaining - part})
    if left:
        raise AssertionError(f"lots of {user_id} are {left} short of the wallet balance")
