"""BroadcastWorker: sends one broadcast through one account, paid for from the license quota.

For every batch it reserves quota first (journalled), records each message in the local journal
as soon as Telegram accepted it, then commits exactly what was sent and releases the rest. A stop,
a pause, a FloodWait or a PeerFlood ends the current batch the same way, so nothing stays held
while the broadcast waits. Recipients not sent stay ``pending``: the broadcast can be resumed.

Telegram's signals are obeyed, never worked around: a FloodWait puts the account in Cooldown for
exactly the seconds asked and the broadcast waits for it; a PeerFlood puts it in Cooldown (or
Excluded) per the anti-spam policy; the rest of the list is never handed to another account.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import Enum, auto
from typing import Protocol

from agent.errors import LicenseError, LicenseInactive, Offline, QuotaExceeded
from agent.journal import JournalEntry, UsageBackend, UsageJournal

from .antispam import AccountState, AntiSpamWorker
from .broadcast_store import (
    BroadcastCounts,
    BroadcastState,
    BroadcastStore,
    RecipientState,
    SuppressionReason,
)
from .clock import AsyncClock
from .core_config import Pacing
from .transports.base import (
    AccountUnusable,
    FloodWait,
    PeerFlood,
    RecipientOutcome,
    RecipientUnavailable,
    SendTimeout,
    TelegramRefused,
    TextRejected,
    Transport,
    check_text,
)

log = logging.getLogger("tgflow.broadcast")

#: Prefix of the journal's recipient keys: ``bcast:<broadcast id>:<recipient>``.
KEY_PREFIX = "bcast:"


def recipient_key(broadcast_id: str, recipient: str) -> str:
    """The journal key of one message of one broadcast."""
    return f"{KEY_PREFIX}{broadcast_id}:{recipient}"


def parse_recipient_key(key: str) -> tuple[str, str] | None:
    """``(broadcast id, recipient)`` of a journal key, or ``None`` for another kind of key."""
    if not key.startswith(KEY_PREFIX):
        return None
    broadcast_id, sep, recipient = key[len(KEY_PREFIX) :].partition(":")
    return (broadcast_id, recipient) if sep and recipient else None


def reconcile(store: BroadcastStore, journal: UsageJournal, entries: Iterable[JournalEntry]) -> int:
    """Mark as sent what the journal's ``entries`` say was sent; return how many were marked now.

    The journal is written first, the broadcast store second: a crash in between leaves a
    recipient ``pending`` that was in fact sent, and this puts it right (so it is not sent twice).
    Only the entries a crash left open can hold such a send; the caller passes those.
    """
    marked = 0
    for entry in entries:
        for key in journal.sent_recipients(entry.correlation_id):
            parsed = parse_recipient_key(key)
            if parsed is not None:
                marked += store.mark(parsed[0], parsed[1], RecipientState.SENT, "")
    return marked


@dataclass(frozen=True)
class Progress:
    """A broadcast's state as the GUI shows it."""

    broadcast_id: str
    state: BroadcastState
    counts: BroadcastCounts
    #: Messages the quota still allows (``None`` until known).
    quota_left: int | None
    #: Why the broadcast is waiting or stopped ("" otherwise).
    detail: str = ""
    #: End of the wait while ``state`` is WAITING.
    until: datetime | None = None


class BroadcastObserver(Protocol):
    """Receives the worker's events (on the engine thread)."""

    def progress(self, progress: Progress) -> None: ...

    def recipient(
        self, broadcast_id: str, recipient: str, state: RecipientState, detail: str
    ) -> None: ...

    def notice(self, broadcast_id: str, kind: str, message: str) -> None: ...


class _Step(Enum):
    SENT = auto()
    FAILED = auto()
    #: The account must wait (Cooldown) or has stopped; end the batch.
    HALT = auto()


class BroadcastWorker:
    """Runs one broadcast on the engine loop. Control it with :meth:`pause`, :meth:`resume`,
    :meth:`stop` (from the same loop)."""

    def __init__(
        self,
        broadcast_id: str,
        *,
        store: BroadcastStore,
        journal: UsageJournal,
        usage: UsageBackend,
        transport: Transport,
        antispam: AntiSpamWorker,
        clock: AsyncClock,
        observer: BroadcastObserver,
        pacing: Pacing | None = None,
        quota_left: int | None = None,
        rng: random.Random | None = None,
        anti_spam_enabled: bool = True,
    ) -> None:
        self.broadcast_id = broadcast_id
        self._store = store
        self._journal = journal
        self._usage = usage
        self._transport = transport
        self._antispam = antispam
        self._clock = clock
        self._observer = observer
        self._pacing = pacing or Pacing()
        self._quota_left = quota_left
        self._rng = rng or random.Random()  # noqa: S311  (pacing jitter, not a secret)
        self._anti_spam_enabled = anti_spam_enabled
        broadcast = store.get(broadcast_id)
        self._account = broadcast.account_id
        self._text = broadcast.text
        self._send_again = broadcast.send_again
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        self._paused = False
        self._state = broadcast.state
        self._detail = ""
        self._until: datetime | None = None
        #: Set when the account itself says the broadcast cannot go on (PeerFlood without
        #: anti-spam, a ban): the reason shown to the user.
        self._halt_reason: str | None = None
        #: Whether the next message must first wait the pacing delay.
        self._paced = False

    # --- control (engine loop) ------------------------------------------------------------------

    def pause(self) -> None:
        """Finish the message in flight, settle the batch, and wait for :meth:`resume`."""
        self._paused = True
        self._wake.set()

    def resume(self) -> None:
        self._paused = False
        self._wake.set()

    def stop(self) -> None:
        """Finish the message in flight, settle the batch, and end; pending ones stay pending."""
        self._stop.set()
        self._wake.set()

    @property
    def transport(self) -> Transport:
        """The account's connected transport (shared while the broadcast runs)."""
        return self._transport

    # --- the run --------------------------------------------------------------------------------

    async def run(self) -> Progress:
        """Send to every pending recipient (or until stopped); return the final progress."""
        self._set(BroadcastState.RUNNING)
        try:
            # Refused before anything is reserved or sent: Telegram would refuse it for everyone.
            check_text(self._text)
            await self._loop()
        except TextRejected as exc:
            self._halt(f"text refused: {exc.reason}")
        except AccountUnusable as exc:
            self._antispam.on_fatal(self._account, exc.reason)
            self._halt(f"account unusable: {exc.reason}")
        except asyncio.CancelledError:
            self._set(BroadcastState.STOPPED, "interrupted")
            raise
        except Exception as exc:
            # Whatever else escapes (a bug, an error no rule knows): the batch in progress has
            # been settled by _batch's finally; the broadcast must not be left "running".
            log.exception("broadcast %s failed", self.broadcast_id)
            self._halt(f"unexpected error: {_describe(exc)}")
        finally:
            await self._disconnect()
        counts = self._store.counts(self.broadcast_id)
        if counts.pending == 0:
            self._set(BroadcastState.FINISHED)
        elif self._halt_reason is not None:
            self._set(BroadcastState.STOPPED, self._halt_reason)
        else:
            self._set(BroadcastState.STOPPED, "stopped")
        return self._progress()

    async def _disconnect(self) -> None:
        try:
            await self._transport.disconnect()
        except Exception as exc:  # closing a session must not hide the run's outcome
            log.warning("disconnecting %s failed: %s", self._account, exc)

    async def _loop(self) -> None:
        while not self._stop.is_set() and self._halt_reason is None:
            if self._paused:
                self._set(BroadcastState.PAUSED)
                await self._wait_wake()
                continue
            pending = self._store.pending(self.broadcast_id)
            if not pending:
                return
            status = self._antispam.status(self._account)
            if status.state == AccountState.EXCLUDED:
                self._halt(f"account excluded: {status.reason}")
                return
            if status.state == AccountState.COOLDOWN:
                self._set(BroadcastState.WAITING, status.reason, until=status.until)
                await self._antispam.wait_until_usable(self._account, self._stop)
                # The cooldown was the pause: Telegram asked for exactly this wait, no more.
                self._paced = False
                continue
            self._set(BroadcastState.RUNNING)
            if not await self._connect():
                continue
            size = min(self._pacing.batch_size, len(pending))
            if self._quota_left is not None:
                size = min(size, self._quota_left)
                if size <= 0:
                    self._halt("quota exhausted")
                    return
            batch = self._without_skips(pending[:size])  # no quota held for the skipped
            if batch:
                await self._batch(batch)

    async def _connect(self) -> bool:
        """Open the account's session; ``False`` when Telegram said wait or stop (handled)."""
        try:
            await self._transport.connect()
        except (FloodWait, PeerFlood) as exc:
            # As for a send: the account cools down and the loop waits it out.
            self._account_signal(exc)
            return False
        except SendTimeout as exc:
            # Nothing was sent or reserved; it is the connection, not the account, so no
            # backoff: the user resumes when Telegram is reachable again.
            self._halt(f"no answer from Telegram while connecting ({exc})")
            return False
        except (TelegramRefused, TextRejected) as exc:
            self._halt(f"Telegram refused: {exc.reason}")
            return False
        return True

    def _account_signal(self, exc: FloodWait | PeerFlood) -> None:
        """Apply Telegram's FloodWait or PeerFlood to the account (the batch ends after it)."""
        account = self._account
        if isinstance(exc, FloodWait):
            status = self._antispam.on_flood_wait(account, exc.seconds, kind=exc.kind)
            self._notice("flood_wait", f"{exc.kind}: Telegram asked to wait {exc.seconds} s")
            self._until = status.until
            return
        status = self._antispam.on_peer_flood(account)
        self._notice(
            "peer_flood",
            "Telegram limited this account (PeerFlood). Check it with @SpamBot.",
        )
        if not self._anti_spam_enabled or status.state == AccountState.EXCLUDED:
            self._halt("PeerFlood: check the account with @SpamBot")

    async def _batch(self, batch: list[str]) -> None:
        try:
            entry = await self._journal.reserve(self._usage, len(batch))
        except QuotaExceeded as exc:
            self._halt(f"quota exhausted: {exc.reason}")
            return
        except LicenseInactive as exc:
            self._halt(f"license not active: {exc.reason}")
            return
        except Offline as exc:
            self._halt(f"the license server cannot be reached: {exc}")
            return
        cid = entry.correlation_id
        if self._quota_left is not None:
            self._quota_left -= len(batch)
        try:
            for recipient in batch:
                if self._interrupted():
                    break
                # The pause is between any two messages of the account, across batches too.
                if self._paced and not await self._pace():
                    break
                # Checked again after the pause, right before the send: another broadcast may
                # have delivered this text meanwhile, or the user suppressed the recipient.
                if not self._without_skips([recipient]):
                    self._paced = False  # the pause was taken; the next message need not wait
                    continue
                step = await self._send_one(cid, recipient)
                self._paced = True
                if step is _Step.HALT:
                    break
        finally:
            await self._settle(cid, len(batch))

    async def _settle(self, cid: str, reserved: int) -> None:
        try:
            outcome = await self._journal.finish(self._usage, cid)
        except LicenseError as exc:
            # The journal keeps the reservation open; it is settled at the next start.
            log.warning("settling %s failed (%s); it will be settled later", cid, exc)
            self._halt(f"usage not settled yet ({exc}); it will be retried at the next start")
            return
        if self._quota_left is not None and outcome.used is not None:
            self._quota_left += reserved - outcome.used
        self._observer.progress(self._progress())

    async def _send_one(self, cid: str, recipient: str) -> _Step:
        account = self._account
        try:
            await self._transport.send_message(recipient, self._text)
        except (FloodWait, PeerFlood) as exc:
            self._account_signal(exc)
            return _Step.HALT
        except SendTimeout as exc:
            # Whether the message arrived is unknown: not counted and not re-sent (a person
            # must never get it twice); the user sees why.
            self._antispam.on_timeout(account)
            self._mark(recipient, RecipientState.FAILED, f"timeout, delivery unknown: {exc}")
            return _Step.HALT
        except RecipientUnavailable as exc:
            if exc.kind is RecipientOutcome.BLOCKED:
                self._store.suppress([recipient], SuppressionReason.BLOCKED, exc.reason)
            self._mark(recipient, RecipientState.FAILED, exc.reason)
            return _Step.FAILED
        except (TextRejected, TelegramRefused) as exc:
            # Telegram answered with a refusal, so nothing went out: the recipient stays
            # pending and the broadcast stops with Telegram's reason (it can be resumed).
            kind = "text refused" if isinstance(exc, TextRejected) else "Telegram refused"
            self._halt(f"{kind}: {exc.reason}")
            return _Step.HALT
        except AccountUnusable:
            raise
        except Exception as exc:
            # Not one of the transport's errors: a bug, or something kurigram raised that no
            # rule maps. Whether the message went out is unknown, so as with a timeout it is
            # not re-sent; the batch ends (settled by the caller) and the broadcast stops.
            log.exception("sending to %s failed unexpectedly", recipient)
            reason = f"unexpected error, delivery unknown: {_describe(exc)}"
            self._mark(recipient, RecipientState.FAILED, reason)
            self._halt(f"unexpected error: {_describe(exc)}")
            return _Step.HALT
        # Journal first (on disk before anything else), then the broadcast's own record.
        self._journal.record_sent(cid, recipient_key(self.broadcast_id, recipient))
        self._mark(recipient, RecipientState.SENT, "")
        self._antispam.on_success(account)
        return _Step.SENT

    async def _pace(self) -> bool:
        """Wait between two messages; ``False`` when a stop or pause cut the wait short."""
        low, high = self._pacing.min_delay_sec, self._pacing.max_delay_sec
        delay = low if high <= low else self._rng.uniform(low, high)
        return await self._sleep(delay)

    async def _sleep(self, seconds: float) -> bool:
        self._wake.clear()
        if self._interrupted():
            return False
        if seconds > 0:
            sleeper = asyncio.ensure_future(self._clock.sleep(seconds))
            waker = asyncio.ensure_future(self._wake.wait())
            try:
                await asyncio.wait({sleeper, waker}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (sleeper, waker):
                    task.cancel()
        return not self._interrupted()

    def _interrupted(self) -> bool:
        return self._stop.is_set() or self._paused

    async def _wait_wake(self) -> None:
        self._wake.clear()
        if self._stop.is_set() or not self._paused:
            return
        await self._wake.wait()

    # --- bookkeeping ----------------------------------------------------------------------------

    def _without_skips(self, recipients: list[str]) -> list[str]:
        """``recipients`` minus the suppressed and those who already got the text elsewhere
        (each of those is marked ``skipped`` now): the last check before anything is sent."""
        skips = self._store.skips(
            self.broadcast_id, self._text, recipients, send_again=self._send_again
        )
        for recipient, detail in skips.items():
            self._mark(recipient, RecipientState.SKIPPED, detail)
        return [r for r in recipients if r not in skips]

    def _mark(self, recipient: str, state: RecipientState, detail: str) -> None:
        self._store.mark(self.broadcast_id, recipient, state, detail)
        self._observer.recipient(self.broadcast_id, recipient, state, detail)
        self._observer.progress(self._progress())

    def _notice(self, kind: str, message: str) -> None:
        log.info("broadcast %s: %s", self.broadcast_id, message)
        self._observer.notice(self.broadcast_id, kind, message)

    def _halt(self, reason: str) -> None:
        if self._halt_reason is None:
            self._halt_reason = reason
            self._notice("stopped", reason)

    def _set(
        self, state: BroadcastState, detail: str = "", *, until: datetime | None = None
    ) -> None:
        self._state, self._detail, self._until = state, detail, until
        self._store.set_state(self.broadcast_id, state, detail)
        self._observer.progress(self._progress())

    def _progress(self) -> Progress:
        return Progress(
            broadcast_id=self.broadcast_id,
            state=self._state,
            counts=self._store.counts(self.broadcast_id),
            quota_left=self._quota_left,
            detail=self._detail,
            until=self._until,
        )


def _describe(exc: BaseException) -> str:
    """``Kind: message`` of an unexpected exception, one line, for the broadcast's reason."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
