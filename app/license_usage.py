"""The messages-per-month limit of a license file, counted on this machine.

Signed in by e-mail, the broadcast worker reserves and commits every batch on the license server
(``agent.usage_http`` behind :class:`agent.journal.UsageJournal`). In license-file mode there is
no server: :class:`LocalUsage` is the same :class:`agent.journal.UsageBackend` (reserve, commit,
rollback, idempotent by correlation id) over a local SQLite file, so the worker and the journal
work unchanged and a crash is settled at the next start exactly as with the server.

A message is counted once: a reservation is counted as held until it is committed (then its
``used``) or rolled back (then nothing), and a commit or rollback repeated with the same answer
returns the same result. The month is the calendar month (UTC) of the reservation by the
injected clock; a reservation held across midnight of the 1st counts in the month it was made.
"""

from __future__ import annotations

import sqlite3
import threading
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Final

from agent.clock import Clock
from agent.errors import IdempotencyConflict, NotFound, QuotaExceeded, ReservationConflict
from agent.protocol import ReservationResponse, ReservationStatus, SettleResponse

#: Name of the counter's file inside the data directory.
USAGE_FILE_NAME: Final = "license-file-usage.sqlite"
#: Held reservations never expire locally (the journal settles them at the next start); the
#: answer still needs an expiry, far enough to never be acted upon.
_HOLD: Final = timedelta(days=3650)

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS reservations (
    id TEXT PRIMARY KEY,
    correlation_id TEXT NOT NULL UNIQUE,
    license_key TEXT NOT NULL,
    month TEXT NOT NULL,
    messages INTEGER NOT NULL CHECK (messages > 0),
    used INTEGER NOT NULL DEFAULT 0,
    status TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS reservations_month ON reservations (license_key, month);
"""


#: A reservation row: id, correlation id, license key, month, messages, used, status.
_Row = tuple[str, str, str, str, int, int, str]
_SELECT: Final = (
    "SELECT id, correlation_id, license_key, month, messages, used, status FROM reservations"
)
_BY_ID: Final = _SELECT + " WHERE id = ?"
_BY_CORRELATION: Final = _SELECT + " WHERE correlation_id = ?"


def month_of(when: datetime) -> str:
    """``YYYY-MM`` of ``when`` (UTC): the period the messages limit counts."""
    return when.strftime("%Y-%m")


class LocalUsage:
    """Reserve / commit / rollback against a license file's monthly messages limit. Thread-safe.

    ``limit`` answers the current license's key and its ``messages`` limit (``None``: no limit);
    it is asked at every reservation, so a newer license file applies at once.
    """

    def __init__(
        self,
        path: Path,
        clock: Clock,
        limit: Callable[[], tuple[str, int | None]],
    ) -> None:
        """Keep the count in ``path`` (SQLite, synchronous writes)."""
        self.path = Path(path)
        self._clock = clock
        self._limit = limit
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        # FULL: a commit is on the disk before the answer returns (the journal relies on it).
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()

    def used(self, license_key: str, when: datetime | None = None) -> tuple[int, int]:
        """``(used, held)`` messages of ``license_key`` in the month of ``when`` (default now)."""
        month = month_of(when or self._clock.now())
        with self._lock:
            return self._counts(license_key, month)

    def _counts(self, license_key: str, month: str) -> tuple[int, int]:
        row = self._db.execute(
            "SELECT COALESCE(SUM(CASE WHEN status = 'committed' THEN used END), 0),"
            " COALESCE(SUM(CASE WHEN status = 'held' THEN messages END), 0)"
            " FROM reservations WHERE license_key = ? AND month = ?",
            (license_key, month),
        ).fetchone()
        return int(row[0]), int(row[1])

    async def reserve(self, messages: int, correlation_id: str) -> ReservationResponse:
        """Hold ``messages`` of this month's limit; the same ``correlation_id`` replays the hold.

        Raises :class:`QuotaExceeded` when the month's limit has fewer left.
        """
        if messages <= 0:
            raise ValueError("a reservation holds at least one message")
        license_key, limit = self._limit()
        now = self._clock.now()
        with self._lock:
            row = self._row_by("correlation_id", correlation_id)
            if row is not None:
                if row[4] != messages:
                    raise IdempotencyConflict(
                        f"reservation {correlation_id} was made for {row[4]} messages"
                    )
                return self._reservation(row)
            month = month_of(now)
            used, held = self._counts(license_key, month)
            left = None if limit is None else max(0, limit - used - held)
            if left is not None and messages > left:
                raise QuotaExceeded(
                    f"the license file allows {limit} messages in {month}; {left} left"
                )
            rid = f"local-{uuid.uuid4().hex}"
            self._db.execute(
                "INSERT INTO reservations (id, correlation_id, license_key, month, messages,"
                " status, created_at) VALUES (?, ?, ?, ?, ?, 'held', ?)",
                (rid, correlation_id, license_key, month, messages, now.isoformat()),
            )
            return self._reservation(self._row_by("id", rid))

    async def commit(self, reservation_id: str, used: int) -> SettleResponse:
        """Count ``used`` messages of the reservation and release the rest (idempotent)."""
        return self._settle(reservation_id, ReservationStatus.COMMITTED, used)

    async def rollback(self, reservation_id: str) -> SettleResponse:
        """Release the whole reservation (idempotent)."""
        return self._settle(reservation_id, ReservationStatus.ROLLED_BACK, 0)

    def _settle(self, rid: str, status: ReservationStatus, used: int) -> SettleResponse:
        with self._lock:
            row = self._row_by("id", rid)
            if row is None:
                raise NotFound(f"no local reservation {rid}")
            messages, current, state = row[4], row[5], row[6]
            if not 0 <= used <= messages:
                raise ReservationConflict(f"{used} is not within the {messages} reserved")
            if state == ReservationStatus.HELD:
                self._db.execute(
                    "UPDATE reservations SET status = ?, used = ? WHERE id = ? AND status = 'held'",
                    (status.value, used, rid),
                )
            elif state != status or current != used:
                # Settled otherwise already: the same answer as the server gives.
                raise ReservationConflict(f"reservation {rid} is already {state}")
            return self._settlement(self._row_by("id", rid))

    def _row_by(self, column: str, value: str) -> _Row | None:
        query = _BY_ID if column == "id" else _BY_CORRELATION
        row = self._db.execute(query, (value,)).fetchone()
        return None if row is None else tuple(row)

    def _remaining(self, license_key: str, month: str) -> int:
        key, limit = self._limit()
        if limit is None or key != license_key:
            return 0 if limit is not None else 2**31 - 1
        used, held = self._counts(license_key, month)
        return max(0, limit - used - held)

    def _reservation(self, row: _Row | None) -> ReservationResponse:
        assert row is not None
        return ReservationResponse(
            reservation_id=row[0],
            messages=row[4],
            expires_at=self._clock.now() + _HOLD,
            remaining=self._remaining(row[2], row[3]),
            status=ReservationStatus(row[6]),
        )

    def _settlement(self, row: _Row | None) -> SettleResponse:
        assert row is not None
        return SettleResponse(
            reservation_id=row[0],
            status=ReservationStatus(row[6]),
            messages=row[4],
            used=row[5],
            remaining=self._remaining(row[2], row[3]),
        )
