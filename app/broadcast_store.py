"""Broadcasts on disk: the message, the account, every recipient's status, and the suppression
list (the people never to be sent to again, from any list).

A broadcast is resumable: recipients not yet sent stay ``pending`` across stops and restarts.
The store is an SQLite file in the user data dir; every write is its own committed transaction.

No accidental second delivery: a recipient who already got a broadcast's exact text in another
broadcast is ``skipped`` (detail :data:`ALREADY_RECEIVED`) unless the broadcast was created with
``send_again``; a suppressed recipient is ``skipped`` always (detail ``suppressed:<reason>``).
Both are decided when the broadcast is created and again just before each send (:meth:`skips`),
so an earlier, unfinished broadcast of the same text cannot deliver it a second time either.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterable, Iterator
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
CREATE INDEX IF NOT EXISTS recipients_by_recipient ON recipients (recipient, state);
CREATE TABLE IF NOT EXISTS suppressed (
    recipient TEXT PRIMARY KEY,
    reason TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL
);
"""

#: Detail of a recipient skipped because another broadcast already delivered the same text.
ALREADY_RECEIVED = "already_received"
#: Prefix of the detail of a recipient skipped because it is on the suppression list.
SUPPRESSED_PREFIX = "suppressed:"


class RecipientState(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"
    #: Never sent in this broadcast, on purpose: already received the text, or suppressed.
    SKIPPED = "skipped"


class SuppressionReason(StrEnum):
    """Why a recipient is on the suppression list."""

    #: Telegram said the recipient blocked the account (a ``blocked`` send outcome).
    BLOCKED = "blocked"
    #: The user put the recipient on the list.
    USER = "user"
    #: An imported list marked the recipient as opted out.
    OPT_OUT = "opt_out"


@dataclass(frozen=True)
class Suppressed:
    recipient: str
    reason: SuppressionReason
    detail: str
    created_at: datetime


@dataclass(frozen=True)
class DeliveryPlan:
    """What starting a list with a text would do, before anything is stored."""

    total: int
    #: Recipients that already received this exact text in an earlier broadcast.
    already_received: tuple[str, ...]
    #: Recipients on the suppression list (never sent to).
    suppressed: tuple[str, ...]
    #: When the text was last delivered to one of :attr:`already_received`.
    last_sent_at: datetime | None = None

    @property
    def fresh(self) -> int:
        """How many would be sent to when the ones who already received it are left out."""
        return self.total - len(self.already_received) - len(self.suppressed)


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
    skipped: int = 0

    @property
    def total(self) -> int:
        return self.sent + self.failed + self.pending + self.skipped

    @property
    def done(self) -> int:
        """Recipients this broadcast is through with (the progress bar's value)."""
        return self.sent + self.failed + self.skipped


@dataclass(frozen=True)
class Broadcast:
    id: str
    account_id: str
    text: str
    created_at: datetime
    state: BroadcastState
    detail: str
    counts: BroadcastCounts
    #: Created with the user's explicit choice to send again to who already received the text.
    send_again: bool = False


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
            columns = {str(row[1]) for row in db.execute("PRAGMA table_info(broadcasts)")}
            if "send_again" not in columns:  # a store written before the column existed
                db.execute(
                    "ALTER TABLE broadcasts ADD COLUMN send_again INTEGER NOT NULL DEFAULT 0"
                )

    def close(self) -> None:
        self._file.close()

    # --- writing --------------------------------------------------------------------------------

    def create(
        self,
        account_id: str,
        text: str,
        recipients: Iterable[str],
        *,
        send_again: bool = False,
    ) -> str:
        """Store a new broadcast and return its id.

        Every recipient is pending, except the suppressed ones and (unless ``send_again``) those
        who already received ``text``: they are stored ``skipped`` with the reason as detail.
        """
        if not text.strip():
            raise ValueError("the message text is empty")
        unique = list(dict.fromkeys(recipients))
        if not unique:
            raise ValueError("there are no recipients")
        broadcast_id = uuid.uuid4().hex[:12]
        now = self._clock.now().isoformat()
        with self._write() as db:
            db.execute(
                "INSERT INTO broadcasts (id, account_id, text, created_at, state, send_again) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (broadcast_id, account_id, text, now, BroadcastState.READY.value, int(send_again)),
            )
            skips = self._skips(db, broadcast_id, text, unique, send_again=send_again)
            rows = []
            for i, r in enumerate(unique):
                skip = skips.get(r)
                state = RecipientState.PENDING if skip is None else RecipientState.SKIPPED
                rows.append((broadcast_id, i, r, state.value, skip or "", now))
            db.executemany(
                "INSERT INTO recipients (broadcast_id, position, recipient, state, detail, "
                "updated_at) VALUES (?, ?, ?, ?, ?, ?)",
                rows,
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
            skipped=by_state.get(RecipientState.SKIPPED, 0),
        )

    def get(self, broadcast_id: str) -> Broadcast:
        with self._lock:
            row = self._db.execute(
                "SELECT id, account_id, text, created_at, state, detail, send_again "
                "FROM broadcasts WHERE id = ?",
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
            send_again=bool(row[6]),
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

    # --- no second delivery ---------------------------------------------------------------------

    def plan(self, text: str, recipients: Iterable[str]) -> DeliveryPlan:
        """Who of ``recipients`` already received ``text``, and who is suppressed."""
        unique = list(dict.fromkeys(recipients))
        with self._lock:
            suppressed = self._suppressed_among(self._db, unique)
            received = self._received_among(self._db, text, unique, exclude="")
        already = tuple(r for r in unique if r in received and r not in suppressed)
        last = max((received[r] for r in already), default=None)
        return DeliveryPlan(
            total=len(unique),
            already_received=already,
            suppressed=tuple(r for r in unique if r in suppressed),
            last_sent_at=datetime.fromisoformat(last) if last else None,
        )

    def skips(
        self, broadcast_id: str, text: str, recipients: Iterable[str], *, send_again: bool
    ) -> dict[str, str]:
        """Which of the broadcast's ``recipients`` must not be sent ``text`` now, and why."""
        with self._lock:
            return self._skips(self._db, broadcast_id, text, list(recipients), send_again)

    def _skips(
        self,
        db: sqlite3.Connection,
        broadcast_id: str,
        text: str,
        recipients: list[str],
        send_again: bool,
    ) -> dict[str, str]:
        skips = {
            r: SUPPRESSED_PREFIX + reason
            for r, reason in self._suppressed_among(db, recipients).items()
        }
        if not send_again:
            for recipient in self._received_among(db, text, recipients, exclude=broadcast_id):
                skips.setdefault(recipient, ALREADY_RECEIVED)
        return skips

    @staticmethod
    def _suppressed_among(db: sqlite3.Connection, recipients: list[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        for chunk in _chunks(recipients):
            marks = ",".join("?" * len(chunk))
            for recipient, reason in db.execute(
                f"SELECT recipient, reason FROM suppressed WHERE recipient IN ({marks})",  # noqa: S608
                chunk,
            ):
                found[str(recipient)] = str(reason)
        return found

    @staticmethod
    def _received_among(
        db: sqlite3.Connection, text: str, recipients: list[str], *, exclude: str
    ) -> dict[str, str]:
        """Recipients sent ``text`` by a broadcast other than ``exclude``, and when (last)."""
        found: dict[str, str] = {}
        for chunk in _chunks(recipients):
            marks = ",".join("?" * len(chunk))
            # Only "?" placeholders are formatted into the query.
            query = (
                "SELECT r.recipient, MAX(COALESCE(r.updated_at, b.created_at)) "  # noqa: S608
                "FROM recipients r JOIN broadcasts b ON b.id = r.broadcast_id "
                f"WHERE r.recipient IN ({marks}) AND r.state = ? AND b.text = ? "
                "AND b.id != ? GROUP BY r.recipient"
            )
            for recipient, at in db.execute(
                query, (*chunk, RecipientState.SENT.value, text, exclude)
            ):
                found[str(recipient)] = str(at)
        return found

    # --- the suppression list -------------------------------------------------------------------

    def suppress(
        self, recipients: Iterable[str], reason: SuppressionReason, detail: str = ""
    ) -> int:
        """Put ``recipients`` on the suppression list; returns how many were not on it yet.

        One already there keeps its first reason (a blocked recipient stays "blocked").
        """
        now = self._clock.now().isoformat()
        with self._write() as db:
            cursor = db.executemany(
                "INSERT OR IGNORE INTO suppressed (recipient, reason, detail, created_at) "
                "VALUES (?, ?, ?, ?)",
                [(r, reason.value, detail, now) for r in dict.fromkeys(recipients)],
            )
            return max(cursor.rowcount, 0)

    def unsuppress(self, recipients: Iterable[str]) -> int:
        """Take ``recipients`` off the suppression list; returns how many were on it."""
        with self._write() as db:
            cursor = db.executemany(
                "DELETE FROM suppressed WHERE recipient = ?", [(r,) for r in set(recipients)]
            )
            return max(cursor.rowcount, 0)

    def suppressed(self) -> list[Suppressed]:
        """The suppression list, newest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT recipient, reason, detail, created_at FROM suppressed "
                "ORDER BY created_at DESC, recipient"
            ).fetchall()
        return [
            Suppressed(str(r), SuppressionReason(str(why)), str(d), datetime.fromisoformat(at))
            for r, why, d, at in rows
        ]


def _chunks(items: list[str], size: int = 500) -> Iterator[list[str]]:
    """Slices small enough for SQLite's limit on bound parameters."""
    for start in range(0, len(items), size):
        yield items[start : start + size]
