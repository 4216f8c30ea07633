"""The points wallet's wire contract (docs/points.md): balance, history, spends and holds.

Points are whole numbers. Every change of a balance is one history entry; ``amount`` is signed
from the spendable wallet's point of view (+ in, − out; 0 for a hold's commit, whose points had
already left the wallet when they were held).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import BeforeValidator, Field, StringConstraints

from .core import _Request, _Response, json_integer

#: The most points one request may move.
MAX_POINTS_PER_REQUEST = 10**12
#: The longest a caller may keep points on hold.
MAX_POINTS_HOLD_SECONDS = 24 * 3600

Points = Annotated[int, Field(ge=1, le=MAX_POINTS_PER_REQUEST), BeforeValidator(json_integer)]
PointsKey = Annotated[
    str, StringConstraints(min_length=8, max_length=128, pattern=r"^[A-Za-z0-9_.:\-]+$")
]
PointsReason = Annotated[
    str, StringConstraints(min_length=1, max_length=500, pattern=r"^[^\x00-\x1f\x7f]+$")
]


class PointsKind(StrEnum):
    GRANT = "grant"
    PURCHASE = "purchase"
    SPEND = "spend"
    HOLD = "hold"
    HOLD_COMMIT = "hold_commit"
    HOLD_RELEASE = "hold_release"
    REFUND = "refund"
    REVERSAL = "reversal"
    EXPIRY = "expiry"
    ADJUSTMENT = "adjustment"
    TOPUP = "topup"
    SETTLEMENT = "settlement"


class PointsHoldState(StrEnum):
    HELD = "held"
    COMMITTED = "committed"
    RELEASED = "released"
    EXPIRED = "expired"


class PointsBalance(_Response):
    #: What can be spent now.
    balance: int
    #: Set aside by open holds.
    held: int
    #: Owed after a store refund the balance could not cover; spending waits until it is 0.
    shortfall: int


class PointsEntryOut(_Response):
    id: str
    kind: PointsKind
    amount: int
    balance_after: int
    reason: str | None
    expires_at: datetime | None
    created_at: datetime


class PointsHistory(_Response):
    entries: list[PointsEntryOut]
    #: Pass as ``cursor`` for the next (older) page; ``None`` on the last one.
    next_cursor: str | None


class PointsSpendRequest(_Request):
    amount: Points
    #: One spend per key: the same request again is answered with the first outcome.
    idempotency_key: PointsKey
    reason: PointsReason | None = None


class PointsSpent(_Response):
    entry: PointsEntryOut
    balance: PointsBalance
    replayed: bool


class PointsHoldRequest(_Request):
    amount: Points
    idempotency_key: PointsKey
    reason: PointsReason | None = None
    ttl_seconds: (
        Annotated[int, Field(ge=1, le=MAX_POINTS_HOLD_SECONDS), BeforeValidator(json_integer)]
        | None
    ) = None


class PointsHoldCommit(_Request):
    #: Points actually used (the rest goes back); all of the hold when absent.
    used: (
        Annotated[int, Field(ge=0, le=MAX_POINTS_PER_REQUEST), BeforeValidator(json_integer)] | None
    ) = None


class PointsHoldOut(_Response):
    id: str
    amount: int
    used: int
    state: PointsHoldState
    expires_at: datetime
    balance: PointsBalance
    replayed: bool


class PointsAdjustRequest(_Request):
    """An operator's correction: points in (positive) or out (negative, never below zero)."""

    delta: Annotated[
        int,
        Field(ge=-MAX_POINTS_PER_REQUEST, le=MAX_POINTS_PER_REQUEST),
        BeforeValidator(json_integer),
    ]
    reason: PointsReason
    idempotency_key: PointsKey


class PointsAdjusted(_Response):
    entry: PointsEntryOut
    balance: PointsBalance
    replayed: bool


class TopupRequest(_Request):
    """Convert points into extra messages of the current period (the plan's rate)."""

    points: Annotated[int, Field(ge=1, le=1_000_000), BeforeValidator(json_integer)]
    idempotency_key: PointsKey


class TopupQuota(_Response):
    limit: int
    remaining: int
    period_end: datetime


class TopupOut(_Response):
    entry: PointsEntryOut
    balance: PointsBalance
    #: The messages these points bought.
    messages: int
    quota: TopupQuota
    replayed: bool
