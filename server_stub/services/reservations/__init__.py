"""Usage reservations: reserve, commit, rollback, and release of expired holds.

Invariant, under any concurrency: ``used + held <= quota_limit`` for every period. It is kept by
the database: holds are taken with a conditional ``UPDATE`` (which row-locks the period on
PostgreSQL; every write transaction on SQLite is ``BEGIN IMMEDIATE``) and the table carries a
CHECK constraint.

Idempotency: a reserve first *claims* its ``correlation_id`` (an insert that waits for, and then
loses to, any concurrent claim of the same id), so duplicates have exactly one outcome, and the
outcome — a hold or a refusal — is recorded under the id for the window.

Lock order, everywhere: idempotency key, then period, then reservations (no deadlocks).

The hot paths are plain Core statements (a reserve is 5, a commit 4); the rare work — creating a
period, releasing expired holds — goes through the ORM path that the sweeper also uses.
"""

from .holds import has_expired_holds, release_expired_holds
from .service import ReservationRow, ReservationService, ReserveResult
from .statements import COMMITTED, EXPIRED, HELD, ROLLED_BACK, expired_hold_exists

__all__ = [
    "COMMITTED",
    "EXPIRED",
    "HELD",
    "ROLLED_BACK",
    "ReservationRow",
    "ReservationService",
    "ReserveResult",
    "expired_hold_exists",
    "has_expired_holds",
    "release_expired_holds",
]
