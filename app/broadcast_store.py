"""Broadcasts on disk: the message, the account, and every recipient's status.

A broadcast is resumable: recipients not yet sent stay ``pending`` across stops and restarts.
The store is an SQLite file in the user data dir; every write is its own committed transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path

from agent.clock import Clock, SystemClock
from agent.durable_sqlite import DurableSQLite

_SCHEMA = """
CREATE TABLE IF NOT EXISTS broadcasts (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    text TEXT NOT NULL,
    created_at TEXT NOT NULL,
    state TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS recipients (
    broadcast_id TEXT NOT NULL REFERENCES broadcasts(id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    recipient TEXT NOT NULL,
    state TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT '',
    updated_at TEXT,
    PRIMARY KEY (broadcast_id, position),
    UNIQUE (broadcast_id, recipient)
);
CREATE INDEX IF NOT EXISTS recipients_state ON recipients (broadcast_id, state, position);
"""


class RecipientState(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"


class BroadcastState(StrEnum):
    #: Created, never started.
    READY = "ready"
    RUNNING = "running"
    PAUSED = "paused"
    #: Waiting for the account's cooldown (a FloodWait or the anti-spam backoff) to end.
    WAITING = "waiting"
    #: Stopped by the user, or by something that needs the user (PeerFlood, quota, offline).
    STOPPED = "stopped"
    #: No recipient is pending any more.
    FINISHED = "finished"


@dataclass(frozen=True)
class BroadcastCounts:
    sent: int
    failed: int
    pending: int

    @property
    def total(self) -> int:
        return self.sent + self.failed + self.pending


@dataclass(frozen=True)
class Broadcast:
    id: str
    account_id: str
    text: str
    created_at: datetime
    state: BroadcastState
    detail: str
    counts: BroadcastCounts


@dataclass(frozen=True)
class RecipientRow:
    position: int
    recipient: str
    state: RecipientState
    detail: str


class BroadcastStore:
    """The broadcasts of this installation, in the SQLite file at ``path``."""

    def __init__(self, path: Path | str, *, clock: Clock | None = None) -> None:
        self.path = Path(path)
        self._clock: Clock = clock or SystemClock()
        self._file = DurableSQLite(self.path)
        self._db = self._file.connection
        self._lock = self._file.lock
        self._write = self._file.write
        with self._write() as db:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)

    def close(self) -> None:
        self._file.close()

    # --- writing --------------------------------------------------------------------------------

    def create(self, account_id: str, text: str, recipients: Iterable[str]) -> str:
        """Store a new broadcast with every recipient pending; return its id."""
        if not text.strip():
            raise ValueError("the message text is empty")
        unique = list(dict.fromkeys(recipients))
        if not unique:
            raise ValueError("there are no recipients")
        broadcast_id = uuid.uuid4().hex[:12]
        now = self._clock.now().isoformat()
        with self._write() as db:
            db.execute(
                "INSERT INTO broadcasts (id, account_id, text, created_at, state) "
                "VALUES (?, ?, ?, ?, ?)",
                (broadcast_id, account_id, text, now, BroadcastState.READY.value),
            )
            db.executemany(
                "INSERT INTO recipients (broadcast_id, position, recipient, state) "
                "VALUES (?, ?, ?, ?)",
                [(broadcast_id, i, r, RecipientState.PENDING.value) for i, r in enumerate(unique)],
            )
        return broadcast_id

    def set_state(self, broadcast_id: str, state: BroadcastState, detail: str = "") -> None:
        with self._write() as db:
            db.execute(
                "UPDATE broadcasts SET state = ?, detail = ? WHERE id = ?",
                (state.value, detail, broadcast_id),
            )

    def mark(
        self, broadcast_id: str, recipient: str, state: RecipientState, detail: str = ""
    ) -> bool:
        """Set one recipient's state; ``False`` when it already had it."""
        with self._write() as db:
            cursor = db.execute(
                "UPDATE recipients SET state = ?, detail = ?, updated_at = ? "
                "WHERE broadcast_id = ? AND recipient = ? AND state != ?",
                (
                    state.value,
                    detail,
                    self._clock.now().isoformat(),
                    broadcast_id,
                    recipient,
                    state.value,
                ),
            )
            return cursor.rowcount > 0

    def delete(self, broadcast_id: str) -> None:
        with self._write() as db:
            db.execute("DELETE FROM broadcasts WHERE id = ?", (broadcast_id,))

    # --- reading --------------------------------------------------------------------------------

    def counts(self, broadcast_id: str) -> BroadcastCounts:
        with self._lock:
            rows = self._db.execute(
                "SELECT state, COUNT(*) FROM recipients WHERE broadcast_id = ? GROUP BY state",
                (broadcast_id,),
            ).fetchall()
        by_state = {str(s): int(n) for s, n in rows}
        return BroadcastCounts(
            sent=by_state.get(RecipientState.SENT, 0),
            failed=by_state.get(RecipientState.FAILED, 0),
            pending=by_state.get(RecipientState.PENDING, 0),
        )

    def get(self, broadcast_id: str) -> Broadcast:
        with self._lock:
            row = self._db.execute(
                "SELECT id, account_id, text, created_at, state, detail FROM broadcasts "
                "WHERE id = ?",
                (broadcast_id,),
            ).fetchone()
        if row is None:
            raise KeyError(broadcast_id)
        return Broadcast(
            id=row[0],
            account_id=row[1],
            text=row[2],
            created_at=datetime.fromisoformat(row[3]),
            state=BroadcastState(row[4]),
            detail=row[5],
            counts=self.counts(broadcast_id),
        )

    def all(self) -> list[Broadcast]:
        """Every broadcast, newest first."""
        with self._lock:
            ids = [
                r[0]
                for r in self._db.execute(
                    "SELECT id FROM broadcasts ORDER BY created_at DESC, rowid DESC"
                ).fetchall()
            ]
        return [self.get(i) for i in ids]

    def pending(self, broadcast_id: str) -> list[str]:
        """The recipients still to send to, in their original order."""
        with self._lock:
            rows = self._db.execute(
                "SELECT recipient FROM recipients WHERE broadcast_id = ? AND state = ? "
                "ORDER BY position",
                (broadcast_id, RecipientState.PENDING.value),
            ).fetchall()
        return [str(r[0]) for r in rows]

    def recipients(self, broadcast_id: str) -> list[RecipientRow]:
        with self._lock:
            rows = self._db.execute(
                "SELECT position, recipient, state, detail FROM recipients "
                "WHERE broadcast_id = ? ORDER BY position",
                (broadcast_id,),
            ).fetchall()
        return [RecipientRow(int(p), str(r), RecipientState(s), str(d)) for p, r, s, d in rows]
