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

from agent.errors import (
    IdempotencyConflict,
    LicenseError,
    LicenseInactive,
    QuotaExceeded,
    ReservationConflict,
    ReservationExpired,
    UnexpectedResponse,
)
from agent.journal_store import JournalStore
from agent.journal_types import (
    OPEN_STATES,
    EntryState,
    JournalEntry,
    JournalError,
    Outcome,
    SettleOutcome,
    UsageBackend,
    new_correlation_id,
)
from agent.protocol import ReservationStatus, SettleResponse

log = logging.getLogger("tgflow.agent.journal")

# The vocabulary lives in agent.journal_types, the SQLite store in agent.journal_store; callers
# keep importing every name from here.
__all__ = [
    "OPEN_STATES",
    "EntryState",
    "JournalEntry",
    "JournalError",
    "JournalStore",
    "Outcome",
    "SettleOutcome",
    "UsageBackend",
    "UsageJournal",
    "new_correlation_id",
]


class UsageJournal(JournalStore):
    """The local journal of usage reservations, in an SQLite file at ``path``.

    One process at a time may use a journal file. Every method that writes commits its own
    transaction before it returns, so a process killed at any instant loses at most the record
    it was writing, and never a record whose request has already been sent. The records are
    kept by :class:`agent.journal_store.JournalStore`; this class talks to the server.
    """

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
