"""The broadcasts of :class:`app.core.Core`: create, run, pause, stop, and the suppression list.

A part of the core kept in its own module, like :mod:`app.core_license_file`; :class:`Core`
derives from :class:`CoreBroadcasts`, which keeps the state that ``Core.__init__`` sets up.
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import TYPE_CHECKING

from agent.journal import UsageBackend, UsageJournal

from .antispam import AntiSpamWorker
from .broadcast import BroadcastObserver, BroadcastWorker, Progress
from .broadcast_store import (
    Broadcast,
    BroadcastState,
    BroadcastStore,
    DeliveryPlan,
    RecipientRow,
    Suppressed,
    SuppressionReason,
)
from .catalog import N_, Reason, story
from .clock import AsyncClock
from .core_config import CoreConfig
from .core_types import BroadcastBusy, LicenseSnapshot, LicenseUnusable
from .telemetry import TelemetryClient
from .transports.base import AccountInfo, TransportFactory, check_text

log = logging.getLogger("tgflow.core")

#: Words of the session log's story lines (``app.catalog.story``).
_SUPPRESSION_KEYS = {
    SuppressionReason.BLOCKED: N_("log.suppression.blocked"),
    SuppressionReason.USER: N_("log.suppression.user"),
    SuppressionReason.OPT_OUT: N_("log.suppression.opt_out"),
}
_END_STATE_KEYS = {
    BroadcastState.FINISHED: N_("log.state.finished"),
    BroadcastState.STOPPED: N_("log.state.stopped"),
    BroadcastState.PAUSED: N_("log.state.paused"),
    BroadcastState.WAITING: N_("log.state.waiting"),
}


class CoreBroadcasts:
    """The broadcasts half of the core (see :class:`app.core.Core`)."""

    config: CoreConfig
    clock: AsyncClock
    transports: TransportFactory
    store: BroadcastStore
    antispam: AntiSpamWorker
    telemetry: TelemetryClient
    _rng: random.Random
    _running: dict[str, tuple[BroadcastWorker, asyncio.Task[Progress]]]

    if TYPE_CHECKING:
        # Defined by Core, CoreAccounts and LicenseFileMode; declared only, so nothing here can
        # shadow them whatever the order of Core's bases.
        def _need_session(self) -> None: ...

        async def license_snapshot(self) -> LicenseSnapshot: ...

        def _usage(self) -> tuple[UsageJournal, UsageBackend]: ...

        def _account(self, account_id: str) -> AccountInfo: ...

    # --- broadcasts -----------------------------------------------------------------------------

    def create_broadcast(
        self, account_id: str, text: str, recipients: list[str], *, send_again: bool = False
    ) -> str:
        """Store a broadcast and return its id.

        The suppressed recipients, and (unless the user chose ``send_again``) those who already
        received this text, are stored ``skipped``; the rest are pending. A text Telegram would
        refuse for everyone (empty, too long) raises :class:`~app.transports.base.TextRejected`
        before anything is stored or sent.
        """
        self._account(account_id)
        check_text(text)
        return self.store.create(account_id, text, recipients, send_again=send_again)

    def delivery_plan(self, text: str, recipients: list[str]) -> DeliveryPlan:
        """Who of ``recipients`` already received ``text``, and who is suppressed."""
        return self.store.plan(text, recipients)

    # --- the suppression list -------------------------------------------------------------------

    def suppressed(self) -> list[Suppressed]:
        return self.store.suppressed()

    def suppress(
        self, recipients: list[str], reason: SuppressionReason = SuppressionReason.USER
    ) -> int:
        """Never send to ``recipients`` again, from any list; returns how many were added."""
        added = self.store.suppress(recipients, reason)
        if added:
            story(
                log,
                N_("log.suppressed"),
                count=added,
                why=Reason(_SUPPRESSION_KEYS[reason]),
            )
        return added

    def unsuppress(self, recipients: list[str]) -> int:
        removed = self.store.unsuppress(recipients)
        if removed:
            story(log, N_("log.unsuppressed"), count=removed)
        return removed

    def broadcasts(self) -> list[Broadcast]:
        return self.store.all()

    def broadcast(self, broadcast_id: str) -> Broadcast:
        return self.store.get(broadcast_id)

    def recipients(self, broadcast_id: str) -> list[RecipientRow]:
        return self.store.recipients(broadcast_id)

    async def run_broadcast(self, broadcast_id: str, observer: BroadcastObserver) -> Progress:
        """Send the broadcast's pending recipients; returns when it finishes or stops."""
        self._need_session()
        broadcast = self.store.get(broadcast_id)
        account = self._account(broadcast.account_id)
        if broadcast.account_id in self._running:
            raise BroadcastBusy(N_("core.busy.sending"), account=account.display_name)
        snapshot = await self.license_snapshot()
        if not snapshot.usable:
            why = snapshot.reason or Reason(N_("license.reason.unknown"))
            raise LicenseUnusable(why.key, **why.params)
        journal, usage = self._usage()
        worker = BroadcastWorker(
            broadcast_id,
            store=self.store,
            journal=journal,
            usage=usage,
            transport=self.transports.transport(account),
            antispam=self.antispam,
            clock=self.clock,
            observer=observer,
            pacing=self.config.pacing,
            quota_left=None if snapshot.messages_unlimited else snapshot.remaining,
            rng=self._rng,
            anti_spam_enabled=self.config.policy.enabled,
        )
        story(
            log,
            N_("log.broadcast_started"),
            id=broadcast_id,
            account=account.display_name,
            pending=broadcast.counts.pending,
            sent=broadcast.counts.sent,
        )
        task = asyncio.ensure_future(worker.run())
        self._running[broadcast.account_id] = (worker, task)
        # Forgotten when it ends, even if the caller stopped waiting for it (the shield below).
        task.add_done_callback(lambda _t: self._running.pop(broadcast.account_id, None))
        final = await asyncio.shield(task)
        counts = final.counts
        story(
            log,
            N_("log.broadcast_ended_because") if final.detail else N_("log.broadcast_ended"),
            id=broadcast_id,
            state=Reason(_END_STATE_KEYS.get(final.state, N_("log.state.stopped"))),
            sent=counts.sent,
            failed=counts.failed,
            left=counts.pending,
            reason=final.detail,
        )
        self.telemetry.record(
            "broadcast.ended",
            state=final.state.value,
            sent=final.counts.sent,
            failed=final.counts.failed,
            pending=final.counts.pending,
        )
        await self.telemetry.flush()
        return final

    def _worker(self, broadcast_id: str) -> BroadcastWorker | None:
        for worker, _task in self._running.values():
            if worker.broadcast_id == broadcast_id:
                return worker
        return None

    def pause_broadcast(self, broadcast_id: str) -> None:
        if (worker := self._worker(broadcast_id)) is not None:
            worker.pause()

    def resume_broadcast(self, broadcast_id: str) -> None:
        if (worker := self._worker(broadcast_id)) is not None:
            worker.resume()

    def stop_broadcast(self, broadcast_id: str) -> None:
        if (worker := self._worker(broadcast_id)) is not None:
            worker.stop()

    async def stop_all(self) -> None:
        """Stop every running broadcast and wait until each has settled its batch."""
        running = list(self._running.values())
        for worker, _task in running:
            worker.stop()
        if running:
            await asyncio.gather(*(task for _w, task in running), return_exceptions=True)
        self._running.clear()
