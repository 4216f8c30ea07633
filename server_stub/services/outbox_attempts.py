"""What every outbox does with the outcome of one delivery attempt (marketplace callbacks, the
portal's notifications): the lease rules in one place.

A row is claimed by bumping its ``attempts`` (the lease's token) and pushing ``next_attempt_at``
past the lease; the sender then reports success or an error, and :func:`settle_attempt` decides:
a success always counts (even after the lease ran out: the message went); an error counts only
for the claim that still holds the lease, and then schedules the retry or gives up.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from enum import Enum
from typing import Final, Protocol, TypeVar

from sqlalchemy import Select
from sqlalchemy.orm import Session

_R = TypeVar("_R")

#: How much of an error is kept on the row.
MAX_ERROR: Final = 500


class OutboxRow(Protocol):
    attempts: int
    delivered_at: datetime | None
    next_attempt_at: datetime | None
    failed_at: datetime | None
    last_error: str | None


class Settled(Enum):
    DELIVERED = "delivered"
    #: Nothing changed: already delivered, or another claim holds the lease now.
    UNCHANGED = "unchanged"
    RETRY = "retry"
    #: Given up for good (dead-lettered): the caller audits and logs it.
    FAILED = "failed"


def locked_row(session: Session, query: Select[_R]) -> _R | None:
    """The row ``query`` selects, locked for this transaction and read afresh (not from the
    identity map: another sweeper may have changed it)."""
    return session.scalar(query.with_for_update().execution_options(populate_existing=True))


def settle_attempt(
    row: OutboxRow,
    *,
    attempt: int,
    error: str | None,
    now: datetime,
    retry_at: Callable[[OutboxRow], datetime | None],
) -> Settled:
    """Apply one attempt's outcome to ``row``; ``retry_at(row)`` is when to try again after an
    error (``None``: give up)."""
    if error is None:
        if row.delivered_at is not None:
            return Settled.UNCHANGED
        row.delivered_at = now
        row.next_attempt_at = row.failed_at = None
        return Settled.DELIVERED
    if row.attempts != attempt or row.next_attempt_at is None:
        return Settled.UNCHANGED  # another claim holds the lease since; its attempt decides
    row.last_error = error[:MAX_ERROR]
    retry = retry_at(row)
    if retry is not None:
        row.next_attempt_at = retry
        return Settled.RETRY
    row.next_attempt_at = None
    row.failed_at = now
    return Settled.FAILED
