"""What the points wallet answers: balances, history entries, outcomes and holds."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ...errors import (
    ValidationFailed,
)
from ...points_models import PointsTransaction, PointsWallet
from .ledger import (
    Kind,
)

MAX_POINTS = 10**12
CLAWBACKS = frozenset({Kind.REFUND, Kind.REVERSAL})


@dataclass(frozen=True)
class Balance:
    balance: int
    held: int
    shortfall: int


@dataclass(frozen=True)
class Entry:
    """One transaction as the history shows it (``amount`` signed: + into the wallet)."""

    id: str
    kind: str
    amount: int
    balance_after: int
    reason: str | None
    external_ref: str | None
    expires_at: datetime | None
    created_at: datetime


@dataclass(frozen=True)
class Outcome:
    entry: Entry | None
    balance: Balance
    #: The same key (or store purchase) was applied before: nothing new was booked.
    replayed: bool


@dataclass(frozen=True)
class HoldView:
    id: str
    amount: int
    used: int
    state: str
    expires_at: datetime
    balance: Balance
    replayed: bool = False


def balance_of(wallet: PointsWallet) -> Balance:
    return Balance(wallet.balance, wallet.held, wallet.shortfall)


def entry_of(tx: PointsTransaction) -> Entry:
    return Entry(
        id=tx.id,
        kind=tx.kind,
        amount=tx.wallet_delta,
        balance_after=tx.balance_after,
        reason=tx.reason,
        external_ref=tx.external_ref,
        expires_at=tx.expires_at,
        created_at=tx.created_at,
    )


def check_amount(amount: int) -> None:
    if not 0 < amount <= MAX_POINTS:
        raise ValidationFailed(f"points must be between 1 and {MAX_POINTS}")
