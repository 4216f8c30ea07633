"""The points wallet's schema (issue #13, docs/points.md): a double-entry ledger.

Every change of a balance is one ``points_transactions`` row (the event: kind, amount, why, who,
its idempotency key or the store's purchase id) and two or more ``points_entries`` whose amounts
sum to zero over a handful of accounts (the user's ``wallet`` and ``held``, the system's
``issued``, ``spent``, ``expired``). ``points_wallets`` caches the sums of a user's two accounts
so that a spend is one conditional ``UPDATE``; the cache and the ledger change in the same
transaction and a test checks that they always agree. ``points_lots`` says which credits the
wallet's points still come from, so grants with an expiry are consumed earliest-expiring first.

Imported at the end of :mod:`server_stub.models`, so ``Base.metadata`` holds it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from agent.protocol import PointsHoldState, PointsKind

from .models import Base, UTCDateTime, new_id, one_of

#: What a transaction did (docs/points.md, "Kinds").
POINTS_KINDS = tuple(kind.value for kind in PointsKind)
#: The ledger's accounts. ``wallet`` and ``held`` are the user's; the others are the system's
#: side of every pair (where points come from and where they go).
POINTS_ACCOUNTS = ("wallet", "held", "issued", "spent", "expired", "owed")
HOLD_STATES = tuple(state.value for state in PointsHoldState)


class PointsWallet(Base):
    """A user's balances, kept equal to the sums of their ledger accounts. ``shortfall`` is what
    a store refund could not claw back (the balance never goes negative): while it is above
    zero nothing can be spent, and the next credits settle it first."""

    __tablename__ = "points_wallets"
    __table_args__ = (
        CheckConstraint("balance >= 0", name="balance_not_negative"),
        CheckConstraint("held >= 0", name="held_not_negative"),
        CheckConstraint("shortfall >= 0", name="shortfall_not_negative"),
    )

    user_id: Mapped[str] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    balance: Mapped[int] = mapped_column(BigInteger, default=0)
    held: Mapped[int] = mapped_column(BigInteger, default=0)
    shortfall: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class PointsTransaction(Base):
    """One change of a balance: the event every client and report reads."""

    __tablename__ = "points_transactions"
    __table_args__ = (
        CheckConstraint(one_of("kind", POINTS_KINDS), name="kind"),
        CheckConstraint("amount > 0", name="amount_positive"),
        # One outcome per key of one user; one credit (or claw-back) per store purchase.
        UniqueConstraint("user_id", "idempotency_key", name="uq_points_transactions_user_key"),
        UniqueConstraint("kind", "external_ref", name="uq_points_transactions_kind_ref"),
        Index("ix_points_transactions_user_created", "user_id", "created_at", "id"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))
    #: Points moved, always positive; the direction is the kind's (and the entries').
    amount: Mapped[int] = mapped_column(BigInteger)
    reason: Mapped[str | None] = mapped_column(String(500), nullable=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(255), nullable=True)
    #: SHA-256 of the request under ``idempotency_key``: another request under it conflicts.
    request_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    #: The store's purchase id of a purchase, refund or reversal, or the hold of a hold's moves.
    external_ref: Mapped[str | None] = mapped_column(String(255), nullable=True)
    #: ``user:<id>``, ``staff:<id>``, ``provider:<name>``, ``system``.
    actor: Mapped[str] = mapped_column(String(100))
    #: How the spendable wallet moved (+ in, − out; 0 for a hold's commit): the history's amount.
    wallet_delta: Mapped[int] = mapped_column(BigInteger)
    #: What the balance was right after (the history shows it; it never changes afterwards).
    balance_after: Mapped[int] = mapped_column(BigInteger)
    #: The messages a top-up bought (``topup`` only): what a replay answers.
    messages: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    #: A credit's expiry (grants may carry one).
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class PointsEntry(Base):
    """One leg of a transaction; the legs of a transaction sum to zero."""

    __tablename__ = "points_entries"
    __table_args__ = (
        CheckConstraint(one_of("account", POINTS_ACCOUNTS), name="account"),
        CheckConstraint("amount <> 0", name="amount_not_zero"),
        Index("ix_points_entries_user_account", "user_id", "account"),
    )

    # INTEGER on SQLite: only that type is its rowid (autoincrementing) primary key.
    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    transaction_id: Mapped[str] = mapped_column(
        ForeignKey("points_transactions.id", ondelete="CASCADE"), index=True
    )
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    account: Mapped[str] = mapped_column(String(16))
    amount: Mapped[int] = mapped_column(BigInteger)


class PointsLot(Base):
    """Points of one credit still in the wallet (or held). Debits take the earliest-expiring
    lots first, lots without an expiry last; the expiry sweep books what is left at the end."""

    __tablename__ = "points_lots"
    __table_args__ = (
        CheckConstraint("remaining >= 0", name="remaining_not_negative"),
        CheckConstraint("remaining <= granted", name="remaining_at_most_granted"),
        Index("ix_points_lots_user_open", "user_id", "remaining"),
        Index("ix_points_lots_expires_at", "expires_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    transaction_id: Mapped[str] = mapped_column(ForeignKey("points_transactions.id"))
    granted: Mapped[int] = mapped_column(BigInteger)
    remaining: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class PointsHold(Base):
    """Two-phase spend: points moved from ``wallet`` to ``held`` until committed (to ``spent``)
    or released (back), or until ``expires_at``, when the sweeper releases them. ``lots``
    remembers which lots the points came from, so a release puts them back where they were."""

    __tablename__ = "points_holds"
    __table_args__ = (
        CheckConstraint(one_of("state", HOLD_STATES), name="state"),
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("used >= 0 AND used <= amount", name="used_within_amount"),
        UniqueConstraint("user_id", "idempotency_key", name="uq_points_holds_user_key"),
        Index("ix_points_holds_state_expires", "state", "expires_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    amount: Mapped[int] = mapped_column(BigInteger)
    used: Mapped[int] = mapped_column(BigInteger, default=0)
    state: Mapped[str] = mapped_column(String(10))
    reason: Mapped[str | None] = mapped_column(String(500), nullable=True)
    idempotency_key: Mapped[str] = mapped_column(String(255))
    request_hash: Mapped[str] = mapped_column(String(64))
    #: ``[[lot_id, points], …]`` taken from the wallet's lots.
    lots: Mapped[list[list[object]]] = mapped_column(JSON)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    settled_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
