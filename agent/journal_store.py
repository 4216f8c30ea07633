"""The usage journal's SQLite store: the schema, and one committed transaction per record.

:class:`JournalStore` holds what :class:`agent.journal.UsageJournal` knows about each
reservation (the states are explained in :mod:`agent.journal`); the journal adds the requests to
the server and the settlement on top of it.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self

from agent.clock import Clock, SystemClock
from agent.durable_sqlite import DurableSQLite
from agent.journal_types import (
    OPEN_STATES,
    EntryState,
    JournalEntry,
    JournalError,
    new_correlation_id,
)
from agent.protocol import ReservationResponse, ReserveRequest

_SCHEMA_VERSION: Final = 1
_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS reservations (
    correlation_id TEXT PRIMARY KEY,
    messages       INTEGER NOT NULL CHECK (messages >= 1),
    state          TEXT NOT NULL,
    created_at     TEXT NOT NULL,
    reservation_id TEXT UNIQUE,
    expires_at     TEXT,
    sealed         INTEGER,
    used           INTEGER,
    settled_at     TEXT,
    detail         TEXT
);
CREATE TABLE IF NOT EXISTS sends (
    correlation_id TEXT NOT NULL REFERENCES reservations (correlation_id) ON DELETE CASCADE,
    recipient_key  TEXT NOT NULL,
    sent_at        TEXT NOT NULL,
    PRIMARY KEY (correlation_id, recipient_key)
);
CREATE INDEX IF NOT EXISTS reservations_state ON reservations (state);
"""


def _ts(when: datetime) -> str:
    return when.isoformat()


def _dt(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


class JournalStore:
    """The journal's records in an SQLite file at ``path``: read them, write one at a time.

    One process at a time may use a journal file. Every method that writes commits its own
    transaction before it returns, so a process killed at any instant loses at most the record
    it was writing, and never a record whose request has already been sent.
    """

    def __init__(self, path: Path | str, *, clock: Clock | None = None) -> None:
        """Open (creating if needed) the journal at ``path``; ``clock`` stamps the records."""
        self.path = Path(path)
        self._clock: Clock = clock or SystemClock()
        # Entries begun by this instance: live, so settle() leaves them to their owner.
        self._own: set[str] = set()
        # synchronous=FULL: every record here precedes a request whose effect must survive a
        # power cut, so it is on disk before the request leaves.
        self._file = DurableSQLite(self.path)
        self._db = self._file.connection
        self._lock = self._file.lock
        self._write = self._file.write
        with self._write() as db:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > _SCHEMA_VERSION:
                raise JournalError(
                    f"{self.path}: journal schema {version} is newer than this program's "
                    f"({_SCHEMA_VERSION})"
                )
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            db.execute(f"PRAGMA user_version={_SCHEMA_VERSION}")

    # --- lifecycle ------------------------------------------------------------------------------

    def close(self) -> None:
        """Close the database (records already written stay written)."""
        self._file.close()

    def __enter__(self) -> Self:
        """Use the journal as a context manager that closes it."""
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close the journal."""
        self.close()

    # --- reading --------------------------------------------------------------------------------

    def _row_entry(self, db: sqlite3.Connection, row: tuple[Any, ...]) -> JournalEntry:
        (cid, messages, state, created, rid, expires, sealed, used, detail) = row
        sent = db.execute("SELECT count(*) FROM sends WHERE correlation_id = ?", (cid,)).fetchone()
        return JournalEntry(
            correlation_id=cid,
            messages=messages,
            state=EntryState(state),
            created_at=datetime.fromisoformat(created),
            reservation_id=rid,
            expires_at=_dt(expires),
            sent=sent[0],
            sealed=sealed,
            used=used,
            detail=detail,
        )

    _COLUMNS: Final = (
        "correlation_id, messages, state, created_at, reservation_id, expires_at, sealed, used, "
        "detail"
    )

    def _find(self, db: sqlite3.Connection, ref: str) -> JournalEntry:
        row = db.execute(
            f"SELECT {self._COLUMNS} FROM reservations "  # noqa: S608 (constant columns)
            "WHERE correlation_id = ? OR reservation_id = ?",
            (ref, ref),
        ).fetchone()
        if row is None:
            raise JournalError(f"the journal has no reservation {ref!r}")
        return self._row_entry(db, row)

    def entry(self, ref: str) -> JournalEntry:
        """The entry whose correlation id or reservation id is ``ref``."""
        with self._lock:
            return self._find(self._db, ref)

    def entries(self, *, open_only: bool = False) -> list[JournalEntry]:
        """Every entry (or only the open ones), oldest first."""
        states = sorted(OPEN_STATES) if open_only else list(EntryState)
        marks = ", ".join("?" for _ in states)
        with self._lock:
            rows = self._db.execute(
                f"SELECT {self._COLUMNS} FROM reservations WHERE state IN ({marks}) "  # noqa: S608
                "ORDER BY created_at, rowid",
                [state.value for state in states],
            ).fetchall()
            return [self._row_entry(self._db, row) for row in rows]

    def sent_recipients(self, ref: str) -> list[str]:
        """The recipient keys recorded as sent for a reservation, in the order recorded.

        After a crash the caller can use this to avoid sending a second message to someone.
        """
        with self._lock:
            cid = self._find(self._db, ref).correlation_id
            rows = self._db.execute(
                "SELECT recipient_key FROM sends WHERE correlation_id = ? ORDER BY rowid", (cid,)
            ).fetchall()
        return [str(r[0]) for r in rows]

    # --- writing: one committed transaction per record ------------------------------------------

    def begin(self, messages: int, correlation_id: str | None = None) -> str:
        """Record the intent to reserve ``messages`` (state ``reserving``); return its id.

        Call this *before* sending the reserve. Beginning an id that is still ``reserving`` with
        the same ``messages`` is allowed (a retry of the same reserve); anything else is a
        :class:`JournalError`.
        """
        cid = correlation_id or new_correlation_id()
        ReserveRequest(messages=messages, correlation_id=cid)  # the wire rules, checked early
        with self._write() as db:
            row = db.execute(
                "SELECT messages, state FROM reservations WHERE correlation_id = ?", (cid,)
            ).fetchone()
            if row is not None:
                if row[0] != messages or row[1] != EntryState.RESERVING:
                    raise JournalError(
                        f"correlation id {cid!r} is already {row[1]} for {row[0]} message(s)"
                    )
            else:
                db.execute(
                    "INSERT INTO reservations (correlation_id, messages, state, created_at) "
                    "VALUES (?, ?, ?, ?)",
                    (cid, messages, EntryState.RESERVING.value, _ts(self._clock.now())),
                )
        self._own.add(cid)
        return cid

    def record_reserved(self, correlation_id: str, reservation: ReservationResponse) -> None:
        """Record the server's answer to the reserve (state ``held``).

        Recording the same answer again is a no-op; an answer naming another reservation than
        the one already recorded is a :class:`JournalError`.
        """
        with self._write() as db:
            entry = self._find(db, correlation_id)
            if entry.reservation_id is not None:
                if entry.reservation_id != reservation.reservation_id:
                    raise JournalError(
                        f"{correlation_id!r} is reservation {entry.reservation_id!r}, "
                        f"not {reservation.reservation_id!r}"
                    )
                return
            if entry.state != EntryState.RESERVING:
                raise JournalError(f"{correlation_id!r} is {entry.state}, not reserving")
            db.execute(
                "UPDATE reservations SET state = ?, reservation_id = ?, expires_at = ? "
                "WHERE correlation_id = ?",
                (
                    EntryState.HELD.value,
                    reservation.reservation_id,
                    _ts(reservation.expires_at),
                    entry.correlation_id,
                ),
            )

    def record_sent(self, ref: str, recipient_key: str) -> bool:
        """Record that the message to ``recipient_key`` went out under reservation ``ref``.

        ``ref`` is the correlation id or the reservation id. Call it once the message is sent and
        before the reservation is committed; it returns when the record is on disk. Recording
        the same recipient again is a no-op and returns ``False`` (``True`` when newly recorded).
        Refused (:class:`JournalError`) unless the reservation is ``held``, or when it would
        record more sends than were reserved.
        """
        if not recipient_key:
            raise ValueError("recipient_key must not be empty")
        with self._write() as db:
            entry = self._find(db, ref)
            if entry.state != EntryState.HELD:
                raise JournalError(
                    f"cannot record a send on {entry.correlation_id!r}: it is {entry.state}"
                )
            cursor = db.execute(
                "INSERT OR IGNORE INTO sends (correlation_id, recipient_key, sent_at) "
                "VALUES (?, ?, ?)",
                (entry.correlation_id, recipient_key, _ts(self._clock.now())),
            )
            if cursor.rowcount and entry.sent >= entry.messages:
                raise JournalError(
                    f"{entry.correlation_id!r} reserved {entry.messages} message(s); "
                    "all are recorded already"
                )
            return cursor.rowcount > 0

    def _seal(self, ref: str) -> JournalEntry:
        """Freeze the count to commit (state ``settling``); idempotent."""
        with self._write() as db:
            entry = self._find(db, ref)
            if entry.state == EntryState.HELD:
                db.execute(
                    "UPDATE reservations SET state = ?, sealed = ? WHERE correlation_id = ?",
                    (EntryState.SETTLING.value, entry.sent, entry.correlation_id),
                )
                entry = self._find(db, ref)
            return entry

    def _record_final(
        self, cid: str, state: EntryState, used: int | None, detail: str | None
    ) -> None:
        with self._write() as db:
            db.execute(
                "UPDATE reservations SET state = ?, used = ?, settled_at = ?, detail = ? "
                "WHERE correlation_id = ?",
                (state.value, used, _ts(self._clock.now()), detail, cid),
            )
        self._own.discard(cid)
