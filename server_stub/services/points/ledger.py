"""The double-entry core of the points wallet: lock a wallet, post a transaction's legs, move
lots. Everything here runs inside the caller's write transaction; nothing commits.

Lock order, everywhere: the wallet row first (``SELECT … FOR UPDATE`` on PostgreSQL; on SQLite
every write transaction is already serialised), then the transaction's idempotency key, then
lots and holds. Two requests of one user therefore queue on the wallet, and the second one sees
what the first committed (its key, its balance), which is what makes "never negative" and
"every key applied once" hold under any concurrency.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from agent.protocol import PointsKind

from ...errors import NotFound
from ...models import User
from ...points_models import PointsEntry, PointsLot, PointsTransaction, PointsWallet


class Account(StrEnum):
    WALLET = "wallet"
    HELD = "held"
    ISSUED = "issued"
    SPENT = "spent"
    EXPIRED = "expired"
    #: What a store refund could not take back: negative while the user owes points.
    OWED = "owed"


#: The wire's kinds are the ledger's (one home: agent.protocol.PointsKind).
Kind = PointsKind


#: The legs of each kind: points move from the first account to the second. An adjustment's
#: direction is its sign (a negative one moves wallet → issued).
MOVES: dict[Kind, tuple[Account, Account]] = {
    Kind.GRANT: (Account.ISSUED, Account.WALLET),
    Kind.PURCHASE: (Account.ISSUED, Account.WALLET),
    Kind.ADJUSTMENT: (Account.ISSUED, Account.WALLET),
    Kind.SPEND: (Account.WALLET, Account.SPENT),
    Kind.TOPUP: (Account.WALLET, Account.SPENT),
    Kind.HOLD: (Account.WALLET, Account.HELD),
    Kind.HOLD_COMMIT: (Account.HELD, Account.SPENT),
    Kind.HOLD_RELEASE: (Account.HELD, Account.WALLET),
    Kind.REFUND: (Account.WALLET, Account.ISSUED),
    Kind.REVERSAL: (Account.WALLET, Account.ISSUED),
    Kind.EXPIRY: (Account.WALLET, Account.EXPIRED),
    Kind.SETTLEMENT: (Account.WALLET, Account.OWED),
}
#: Kinds whose points are new to the wallet: each makes a lot.
CREDITS = frozenset({Kind.GRANT, Kind.PURCHASE, Kind.ADJUSTMENT})


def request_hash(**fields: object) -> str:
    """What distinguishes one request under a key from another (replay vs conflict)."""
    body = json.dumps(fields, sort_keys=True, default=str)
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def lock_wallet(session: Session, user_id: str, now: datetime) -> PointsWallet:
    """The user's wallet row, locked for this transaction; created on first use (a user that
    does not exist has no wallet: ``NotFound``)."""
    query = (
        select(PointsWallet)
        .where(PointsWallet.user_id == user_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    wallet = session.scalar(query)
    if wallet is not None:
        return wallet
    if session.get(User, user_id) is None:
        raise NotFound("no such user")
    values = {"user_id": user_id, "balance": 0, "held": 0, "shortfall": 0, "updated_at": now}
    # The first two requests of a new user may race to create the row: the loser's is a no-op.
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    session.execute(
        dialect.insert(PointsWallet)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["user_id"])
    )
    wallet = session.scalar(query)
    assert wallet is not None
    return wallet


def keyed(session: Session, user_id: str, key: str) -> PointsTransaction | None:
    """The transaction already recorded under ``key`` for this user (read under the wallet's
    lock, so a concurrent first use of the key has committed or not started)."""
    return session.scalar(
        select(PointsTransaction).where(
            PointsTransaction.user_id == user_id, PointsTransaction.idempotency_key == key
        )
    )


def by_external_ref(session: Session, kind: Kind, ref: str) -> PointsTransaction | None:
    return session.scalar(
        select(PointsTransaction).where(
            PointsTransaction.kind == kind.value, PointsTransaction.external_ref == ref
        )
    )


Leg = tuple[Account, int]


def legs_of(kind: Kind, amount: int, *, debit: bool = False) -> list[Leg]:
    """The two legs of a plain move of ``amount`` points of ``kind`` (``debit``: an adjustment
    that takes points away)."""
    source, target = MOVES[kind]
    if debit:
        source, target = target, source
    return [(source, -amount), (target, amount)]


@dataclass(frozen=True)
class Posting:
    """What to record: ``amount`` points of ``kind`` (always positive) as ``legs`` that sum to
    zero, and about it."""

    kind: Kind
    amount: int
    legs: list[Leg]
    actor: str
    reason: str | None = None
    idempotency_key: str | None = None
    request_hash: str | None = None
    external_ref: str | None = None
    expires_at: datetime | None = None


def post(
    session: Session, wallet: PointsWallet, posting: Posting, now: datetime
) -> PointsTransaction:
    """Record ``posting`` as a transaction whose legs sum to zero, and update the locked
    ``wallet``'s cached sums by the same legs. The caller has checked that the user's accounts
    can pay (the table's CHECKs are the backstop)."""
    if posting.amount <= 0:
        raise ValueError("a posting moves a positive number of points")
    if sum(amount for _, amount in posting.legs) != 0 or any(a == 0 for _, a in posting.legs):
        raise ValueError(f"unbalanced or empty legs: {posting.legs}")
    wallet.balance += _sum(posting.legs, Account.WALLET)
    wallet.held += _sum(posting.legs, Account.HELD)
    wallet.shortfall -= _sum(posting.legs, Account.OWED)
    wallet.updated_at = now
    tx = PointsTransaction(
        user_id=wallet.user_id,
        kind=posting.kind.value,
        amount=posting.amount,
        reason=posting.reason,
        idempotency_key=posting.idempotency_key,
        request_hash=posting.request_hash,
        external_ref=posting.external_ref,
        actor=posting.actor,
        wallet_delta=_sum(posting.legs, Account.WALLET),
        balance_after=wallet.balance,
        expires_at=posting.expires_at,
        created_at=now,
    )
    session.add(tx)
    session.flush()
    session.execute(
        insert(PointsEntry),
        [
            {
                "transaction_id": tx.id,
                "user_id": wallet.user_id,
                "account": account.value,
                "amount": amount,
            }
            for account, amount in posting.legs
        ],
    )
    return tx


def _sum(legs: list[Leg], account: Account) -> int:
    return sum(amount for leg_account, amount in legs if leg_account is account)


def add_lot(
    session: Session, tx: PointsTransaction, amount: int, expires_at: datetime | None, now: datetime
) -> None:
    session.add(
        PointsLot(
            user_id=tx.user_id,
            transaction_id=tx.id,
            granted=amount,
            remaining=amount,
            expires_at=expires_at,
            created_at=now,
        )
    )


def take_lots(session: Session, user_id: str, amount: int) -> list[list[object]]:
    """Take ``amount`` points out of the user's lots, earliest expiry first (no expiry last,
    then oldest first); returns ``[[lot_id, points], …]`` (what a hold's release puts back)."""
    lots = session.scalars(
        select(PointsLot)
        .where(PointsLot.user_id == user_id, PointsLot.remaining > 0)
        .order_by(
            PointsLot.expires_at.is_(None),
            PointsLot.expires_at,
            PointsLot.created_at,
            PointsLot.id,
        )
        .with_for_update()
    ).all()
    taken: list[list[object]] = []
    left = amount
    for lot in lots:
        if left == 0:
            break
        part = min(lot.remaining, left)
        lot.remaining -= part
        left -= part
        taken.append([lot.id, part])
    if left:
        # The wallet's cached balance said the points were there: the lots must agree.
        raise AssertionError(f"lots of {user_id} are {left} short of the wallet balance")
    return taken


def put_back(session: Session, taken: Iterable[list[object]]) -> None:
    """Return points to the lots they were taken from (a hold's release)."""
    for lot_id, part in taken:
        lot = session.get(PointsLot, str(lot_id), with_for_update=True)
        assert lot is not None
        lot.remaining += int(str(part))
