"""A crash-safe local journal of usage reservations.

The server counts a message when the client commits it; the client knows what it really sent.
:class:`UsageJournal` keeps the client's side in a local SQLite database so that a process killed
at any instant leaves enough behind for :meth:`UsageJournal.settle` to make the server count
exactly the messages that were sent. Every record is written, in its own committed transaction
(WAL, ``synchronous=FULL``), *before* the request that depends on it is sent:

=========== ========================================================== =========================
state       written                                                    what settle() does
=========== ========================================================== =========================
reserving   before ``POST /usage/reserve`` (correlation_id, messages)  replay the reserve (same
                                                                       correlation_id and body),
                                                                       then roll it back
held        when the reserve answer arrives (reservation_id, expiry)   commit the sends recorded
                                                                       (roll back when none)
settling    before ``commit``/``rollback``: the count, sealed          replay that call
committed   the server counted ``used`` messages                       nothing (settled)
rolled_back the server released the whole hold                         nothing (settled)
expired     the hold outlived its TTL; recorded sends were not counted nothing (settled)
refused     the server refused the reserve; nothing was held           nothing (settled)
=========== ========================================================== =========================

Each send is recorded with :meth:`UsageJournal.record_sent` (once per recipient key, so a retried
record does not count twice) after the message went out and before the reservation is committed.
docs/agent.md, "Usage journal", has the full rules.
"""

from __future__ import annotations

import logging
import sqlite3
import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Protocol

from agent.clock import Clock, SystemClock
from agent.durable_sqlite import DurableSQLite
from agent.errors import (
    IdempotencyConflict,
    LicenseError,
    LicenseInactive,
    QuotaExceeded,
    ReservationConflict,
    ReservationExpired,
    UnexpectedResponse,
)
from agent.protocol import (
    ReservationResponse,
    ReservationStatus,
    ReserveRequest,
    SettleResponse,
)

log = logging.getLogger("tgflow.agent.journal")

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


class UsageBackend(Protocol):
    """The ``/usage`` endpoints, as the journal needs them (see ``agent.usage_http``).

    Each method returns the wire model and raises a typed :class:`agent.errors.LicenseError`:
    :class:`QuotaExceeded`, :class:`ReservationExpired`, :class:`ReservationConflict`,
    :class:`Offline`, …
    """

    async def reserve(self, messages: int, correlation_id: str) -> ReservationResponse:
        """Hold quota for ``messages``; the same ``correlation_id`` replays the same hold."""
        ...

    async def commit(self, reservation_id: str, used: int) -> SettleResponse:
        """Count ``used`` messages of the reservation and release the rest."""
        ...

    async def rollback(self, reservation_id: str) -> SettleResponse:
        """Release the whole reservation."""
        ...


class EntryState(StrEnum):
    """Where one reservation stands, as far as this machine knows."""

    RESERVING = "reserving"
    HELD = "held"
    SETTLING = "settling"
    COMMITTED = "committed"
    ROLLED_BACK = "rolled_back"
    EXPIRED = "expired"
    REFUSED = "refused"


#: States that a crash can leave behind and that :meth:`UsageJournal.settle` resolves.
OPEN_STATES: Final = frozenset({EntryState.RESERVING, EntryState.HELD, EntryState.SETTLING})


class Outcome(StrEnum):
    """How :meth:`UsageJournal.settle` (or :meth:`UsageJournal.finish`) left a reservation."""

    #: The server counted ``used`` messages (the sends recorded).
    COMMITTED = "committed"
    #: Nothing was sent; the hold was released.
    ROLLED_BACK = "rolled_back"
    #: The hold had expired on the server; the recorded sends were *not* counted.
    EXPIRED = "expired"
    #: The server refused the (replayed) reserve; nothing was ever held.
    REFUSED = "refused"
    #: The server had settled it otherwise than the journal says (``reservation_conflict``).
    CONFLICT = "conflict"
    #: Could not be settled now (offline, token rejected, …); it stays open for the next try.
    DEFERRED = "deferred"


class JournalError(LicenseError):
    """The journal was used against its rules (unknown reservation, send on a settled one, …)."""


@dataclass(frozen=True)
class JournalEntry:
    """One reservation as recorded in the journal."""

    correlation_id: str
    messages: int
    state: EntryState
    created_at: datetime
    reservation_id: str | None
    expires_at: datetime | None
    #: Sends recorded so far (distinct recipient keys).
    sent: int
    #: The count sealed for settlement (``settling`` and later), else ``None``.
    sealed: int | None
    #: Messages the server counted, once settled; ``None`` while open or when unknown.
    used: int | None
    detail: str | None

    @property
    def is_open(self) -> bool:
        """Whether a crash could have left this entry unsettled."""
        return self.state in OPEN_STATES


@dataclass(frozen=True)
class SettleOutcome:
    """What happened to one reservation when it was settled."""

    correlation_id: str
    reservation_id: str | None
    outcome: Outcome
    #: Sends recorded locally.
    sent: int
    #: Messages the server counted (``None`` when unknown: deferred, or a conflict).
    used: int | None
    detail: str

    @property
    def uncounted(self) -> int | None:
        """Sends that went out but that the server did not count (``None`` when unknown)."""
        return None if self.used is None else max(self.sent - self.used, 0)


def _ts(when: datetime) -> str:
    return when.isoformat()


def _dt(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def new_correlation_id() -> str:
    """A fresh, random correlation id valid on the wire."""
    return "tgf-" + uuid.uuid4().hex


class UsageJournal:
    """The local journal of usage reservations, in an SQLite file at ``path``.

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

    def __enter__(self) -> UsageJournal:
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

    # --- talking to the server ------------------------------------------------------------------

    async def reserve(
        self, backend: UsageBackend, messages: int, correlation_id: str | None = None
    ) -> JournalEntry:
        """Reserve ``messages`` through ``backend``, journalled; return the ``held`` entry.

        The intent is recorded before the request and the answer after it. A refusal that holds
        nothing (:class:`QuotaExceeded`, :class:`LicenseInactive`,
        :class:`IdempotencyConflict`) is recorded as ``refused`` and re-raised. Any other
        failure (offline, …) leaves the entry ``reserving`` and is re-raised: call again with the
        same ``correlation_id`` to retry, or let :meth:`settle` release it.
        """
        cid = self.begin(messages, correlation_id)
        try:
            answer = await backend.reserve(messages, cid)
        except (QuotaExceeded, LicenseInactive, IdempotencyConflict) as exc:
            self._record_final(cid, EntryState.REFUSED, 0, f"{type(exc).__name__}: {exc.reason}")
            raise
        self.record_reserved(cid, answer)
        if answer.status != ReservationStatus.HELD:
            outcome = await self._settle_entry(backend, self.entry(cid))
            raise JournalError(
                f"reservation {answer.reservation_id!r} is {answer.status}, not held "
                f"(settled: {outcome.outcome})"
            )
        return self.entry(cid)

    async def finish(self, backend: UsageBackend, ref: str) -> SettleOutcome:
        """Settle one reservation now: commit the sends recorded, or roll back when none.

        This is both the normal end of a batch and the abort path: what was sent is counted,
        the rest released. The count is sealed (state ``settling``) before the request, so no
        send can be recorded afterwards. A failure that leaves the outcome unknown (offline, …)
        is re-raised and the entry stays open; calling ``finish`` again (or :meth:`settle`)
        repeats exactly the same request.
        """
        return await self._settle_entry(backend, self.entry(ref))

    async def settle(self, backend: UsageBackend) -> list[SettleOutcome]:
        """Resolve every entry a previous run left open; return one outcome per entry.

        Run it at start, before new reservations. Entries begun by this journal object are live
        and left alone. ``reserving``: the reserve is replayed with the same correlation id and
        body (the server returns the hold if the first request reached it, or creates one) and
        then rolled back, as nothing can have been sent under it. ``held``: the sends recorded
        are committed (rolled back when none). ``settling``: the sealed commit or rollback is
        repeated. A hold that expired on the server is reported as :attr:`Outcome.EXPIRED` (its
        sends were not counted); a failure that leaves the outcome unknown is reported as
        :attr:`Outcome.DEFERRED` and the entry stays open for the next call.
        """
        outcomes: list[SettleOutcome] = []
        for entry in self.entries(open_only=True):
            if entry.correlation_id in self._own:
                continue
            try:
                outcome = await self._settle_entry(backend, entry)
            except LicenseError as exc:
                outcome = SettleOutcome(
                    entry.correlation_id,
                    entry.reservation_id,
                    Outcome.DEFERRED,
                    entry.sent,
                    None,
                    f"{type(exc).__name__}: {exc.reason}",
                )
            log.log(
                logging.WARNING
                if outcome.outcome in (Outcome.EXPIRED, Outcome.CONFLICT, Outcome.DEFERRED)
                else logging.INFO,
                "settled a reservation left open",
                extra={
                    "correlation_id": outcome.correlation_id,
                    "reservation_id": outcome.reservation_id,
                    "outcome": outcome.outcome.value,
                    "sent": outcome.sent,
                    "used": outcome.used,
                },
            )
            outcomes.append(outcome)
        return outcomes

    async def _settle_entry(self, backend: UsageBackend, entry: JournalEntry) -> SettleOutcome:
        cid = entry.correlation_id
        if not entry.is_open:
            return self._outcome_of(entry)
        if entry.state == EntryState.RESERVING:
            try:
                answer = await backend.reserve(entry.messages, cid)
            except (QuotaExceeded, LicenseInactive, IdempotencyConflict) as exc:
                detail = f"the replayed reserve was refused ({type(exc).__name__}: {exc.reason})"
                self._record_final(cid, EntryState.REFUSED, 0, detail)
                return self._outcome_of(self.entry(cid))
            self.record_reserved(cid, answer)
        entry = self._seal(cid)
        assert entry.reservation_id is not None and entry.sealed is not None
        rid, used = entry.reservation_id, entry.sealed
        try:
            answer_or_none: SettleResponse | None = await (
                backend.commit(rid, used) if used else backend.rollback(rid)
            )
        except ReservationExpired as exc:
            self._record_final(
                cid, EntryState.EXPIRED, 0, f"{used} send(s) not counted: {exc.reason}"
            )
            return self._outcome_of(self.entry(cid))
        except ReservationConflict:
            answer_or_none = await self._probe(backend, rid, used)
        if answer_or_none is None:
            self._record_final(
                cid,
                EntryState.COMMITTED,
                None,
                f"conflict: the server had already committed it with another count than {used}",
            )
            return self._outcome_of(self.entry(cid), conflict=True)
        conflict = (
            answer_or_none.status == ReservationStatus.COMMITTED and answer_or_none.used != used
        ) or (answer_or_none.status == ReservationStatus.ROLLED_BACK and used > 0)
        self._record_answer(cid, answer_or_none, used)
        return self._outcome_of(self.entry(cid), conflict=conflict)

    async def _probe(self, backend: UsageBackend, rid: str, used: int) -> SettleResponse | None:
        """After a conflict: learn how the server settled ``rid``, without changing it.

        The server refused our commit (or rollback), so the reservation is no longer held and
        the opposite call cannot change it either: it only returns the settled state, or
        conflicts again when the reservation was committed with a count we cannot learn.
        """
        try:
            return await (backend.rollback(rid) if used else backend.commit(rid, 0))
        except ReservationConflict:
            return None

    def _record_answer(self, cid: str, answer: SettleResponse, sealed: int) -> None:
        if answer.status == ReservationStatus.COMMITTED:
            self._record_final(cid, EntryState.COMMITTED, answer.used, None)
        elif answer.status == ReservationStatus.ROLLED_BACK:
            detail = f"{sealed} send(s) not counted: rolled back" if sealed else None
            self._record_final(cid, EntryState.ROLLED_BACK, 0, detail)
        elif answer.status == ReservationStatus.EXPIRED:
            detail = f"{sealed} send(s) not counted: the hold expired on the server"
            self._record_final(cid, EntryState.EXPIRED, 0, detail)
        else:
            raise UnexpectedResponse(
                f"reservation {answer.reservation_id!r} is still {answer.status} after settling"
            )

    def _outcome_of(self, entry: JournalEntry, *, conflict: bool = False) -> SettleOutcome:
        by_state = {
            EntryState.COMMITTED: Outcome.COMMITTED,
            EntryState.ROLLED_BACK: Outcome.ROLLED_BACK,
            EntryState.EXPIRED: Outcome.EXPIRED,
            EntryState.REFUSED: Outcome.REFUSED,
        }
        outcome = Outcome.CONFLICT if conflict else by_state.get(entry.state, Outcome.DEFERRED)
        return SettleOutcome(
            entry.correlation_id,
            entry.reservation_id,
            outcome,
            entry.sent,
            entry.used,
            entry.detail or entry.state.value,
        )
