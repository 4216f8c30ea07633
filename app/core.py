"""The desktop's service layer: everything the panels ask for, as async methods (no Qt).

One :class:`Core` lives on the engine loop (see :mod:`app.engine`). The view-models call its
coroutines through ``Engine.submit`` and receive its events through the callbacks they register;
nothing here touches a widget.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from pathlib import Path

from agent.client import AsyncLicenseClient
from agent.errors import LicenseError, Offline
from agent.journal import Outcome, SettleOutcome, UsageJournal
from agent.secrets import RefreshTokenStore

from . import __version__
from .access_log import log_requests
from .accounts_file import load_accounts, save_accounts
from .antispam import AccountStatus, AntiSpamWorker
from .broadcast import BroadcastObserver, BroadcastWorker, Progress, reconcile
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
from .clock import AsyncClock, SystemAsyncClock
from .core_config import CoreConfig
from .core_license_file import LicenseFileMode
from .core_types import (
    AccountRow,
    BroadcastBusy,
    DeviceRow,
    LicenseFileFacts,
    LicenseSnapshot,
    LicenseUnusable,
    NotSignedIn,
)
from .license_modules import MODULE_MULTI_ACCOUNT
from .license_online import ClockTimer, HeartbeatTimer
from .license_snapshot import offline_snapshot, online_snapshot
from .problems import problem_reason
from .telemetry import TelemetryClient
from .transports.base import (
    AccountInfo,
    AccountUnusable,
    FloodWait,
    LoginFlow,
    TransportFactory,
    check_text,
)

log = logging.getLogger("tgflow.core")

# The rows and errors live in core_types; callers keep importing them from here.
__all__ = [
    "AccountRow",
    "BroadcastBusy",
    "Core",
    "DeviceRow",
    "LicenseFileFacts",
    "LicenseSnapshot",
    "LicenseUnusable",
    "NotSignedIn",
]


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


class Core(LicenseFileMode):
    """The desktop's services, on the engine loop. Create it inside that loop."""

    def __init__(
        self,
        config: CoreConfig,
        *,
        data_dir: Path,
        transports: TransportFactory,
        fingerprint: str,
        clock: AsyncClock | None = None,
        secrets: RefreshTokenStore | None = None,
        rng: random.Random | None = None,
        device_name: str | None = None,
        license_client: AsyncLicenseClient | None = None,
        heartbeat_timer: HeartbeatTimer | None = None,
    ) -> None:
        self.config = config
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.clock: AsyncClock = clock or SystemAsyncClock()
        self.transports = transports
        self._rng = rng or random.Random()  # noqa: S311  (pacing jitter, not a secret)
        self.client = license_client or AsyncLicenseClient(
            config.api_base_url,
            fingerprint=fingerprint,
            pins=list(config.pins),
            data_dir=self.data_dir,
            secrets=secrets,
            clock=self.clock,
            device_name=device_name,
        )
        log_requests(self.client.http)
        self.journal = UsageJournal(self.data_dir / "usage-journal.sqlite", clock=self.clock)
        self._init_license_files(
            config,
            __version__,
            fingerprint=fingerprint,
            server_id=device_name or "",
            timer=heartbeat_timer or ClockTimer(self.clock),
        )
        self.store = BroadcastStore(self.data_dir / "broadcasts.sqlite", clock=self.clock)
        self.antispam = AntiSpamWorker(
            config.policy, self.data_dir / "account-states.json", self.clock
        )
        self._accounts_path = self.data_dir / "accounts.json"
        self._accounts: dict[str, AccountInfo] = self._load_accounts()
        self._email: str | None = None
        self._signed_in = False
        self._login: LoginFlow | None = None
        self._running: dict[str, tuple[BroadcastWorker, asyncio.Task[Progress]]] = {}
        self._account_listeners: list[Callable[[AccountRow], None]] = []
        self.antispam.subscribe(self._account_status_changed)
        # Anonymous counts only (never recipients, text or account names); off by default.
        self.telemetry = TelemetryClient(
            config.api_base_url,
            enabled=config.telemetry,
            install_id_path=self.data_dir / "install-id",
            app_version=__version__,
            clock=self.clock,
        )
        self.telemetry.record("app.started")

    # --- session --------------------------------------------------------------------------------

    @property
    def signed_in(self) -> bool:
        return self._signed_in

    async def sign_in(self, email: str, password: str) -> LicenseSnapshot:
        """Log in, settle what a previous run left open, and return the license."""
        try:
            tokens = await self.client.login(email, password)
        except LicenseError as exc:
            log.debug("sign-in refused: %s", exc.reason)
            story(
                log,
                N_("log.sign_in_failed"),
                level=logging.WARNING,
                email=email,
                reason=problem_reason(exc),
            )
            raise
        self._email = tokens.user.email
        self._signed_in = True
        story(log, N_("log.signed_in"), email=self._email)
        await self.settle_journal()
        return await self.license_snapshot()

    async def resume_session(self) -> LicenseSnapshot | None:
        """Sign in again with the stored refresh token; ``None`` when there is none or it is
        no longer accepted (the login dialog is shown then). A kept license file comes first:
        it is verified again, and a refusal (expired, revoked, …) is raised for the dialog."""
        if self.license_files.kept:
            return await self.activate_kept_license_file()
        if self.client.secrets.load() is None:
            return None
        try:
            tokens = await self.client.refresh()
        except Offline:
            raise
        except LicenseError as exc:
            log.info("the stored session is no longer valid: %s", exc)
            return None
        self._email = tokens.user.email
        self._signed_in = True
        await self.settle_journal()
        return await self.license_snapshot()

    async def sign_out(self) -> None:
        if self._file_mode:
            await self.deactivate_license_file()
            return
        await self.stop_all()
        try:
            await self.client.logout()
        finally:
            story(log, N_("log.signed_out"), email=self._email)
            self._signed_in = False
            self._email = None

    async def settle_journal(self) -> list[SettleOutcome]:
        """Resolve the reservations a previous run (a crash) left open."""
        journal, usage = self._usage()
        left_open = journal.entries(open_only=True)
        outcomes = await journal.settle(usage)
        marked = reconcile(self.store, journal, left_open)
        if marked:
            story(log, N_("log.crash_marked"), count=marked)
        for outcome in outcomes:
            level = logging.INFO if outcome.outcome != Outcome.DEFERRED else logging.WARNING
            log.log(
                level,
                "usage left open by a previous run: %s, %d sent, %s counted (%s)",
                outcome.outcome,
                outcome.sent,
                "?" if outcome.used is None else outcome.used,
                outcome.detail,
            )
        return outcomes

    # --- license --------------------------------------------------------------------------------

    async def license_snapshot(self) -> LicenseSnapshot:
        """``GET /license`` and the devices; the offline lease when the server is unreachable.
        In license-file mode: the file verified again and this month's messages."""
        if self._file_mode:
            return self._file_snapshot()
        self._need_session()
        try:
            lic = await self.client.license()
            devices = await self.client.devices()
        except Offline:
            return self._offline_snapshot()
        return online_snapshot(self._email, lic, devices)

    def _offline_snapshot(self) -> LicenseSnapshot:
        return offline_snapshot(self._email, self.client)

    async def deactivate_device(self, device_id: str) -> LicenseSnapshot:
        self._need_session()
        await self.client.deactivate_device(device_id)
        return await self.license_snapshot()

    # --- accounts -------------------------------------------------------------------------------

    def subscribe_accounts(self, callback: Callable[[AccountRow], None]) -> None:
        """``callback`` is called (on the engine thread) whenever an account's state changes."""
        self._account_listeners.append(callback)

    def unsubscribe_accounts(self, callback: Callable[[AccountRow], None]) -> None:
        """Stop calling ``callback`` (unknown callbacks are ignored)."""
        if callback in self._account_listeners:
            self._account_listeners.remove(callback)

    def accounts(self) -> list[AccountRow]:
        return [AccountRow(info, self.antispam.status(i)) for i, info in self._accounts.items()]

    async def add_account_start(self, phone: str) -> None:
        """Step 1 of adding an account: Telegram sends a code to ``phone``."""
        if self._accounts and not self.has_module(MODULE_MULTI_ACCOUNT):
            raise LicenseUnusable(N_("license.reason.module_multi_account"))
        await self.add_account_cancel()
        self._login = self.transports.login_flow()
        await self._login.send_code(phone)

    async def add_account_code(self, code: str) -> AccountRow:
        """Step 2: the code. Raises ``PasswordRequired`` when step 3 is needed."""
        info = await self._login_flow().sign_in(code)
        return self._added(info)

    async def add_account_password(self, password: str) -> AccountRow:
        """Step 3: the two-step verification password."""
        info = await self._login_flow().check_password(password)
        return self._added(info)

    async def add_account_cancel(self) -> None:
        if self._login is not None:
            flow, self._login = self._login, None
            await flow.cancel()

    def _login_flow(self) -> LoginFlow:
        if self._login is None:
            raise RuntimeError("start by entering the phone number")
        return self._login

    def _added(self, info: AccountInfo) -> AccountRow:
        self._login = None
        self._accounts[info.account_id] = info
        self._save_accounts()
        story(log, N_("log.account_added"), account=info.display_name)
        row = AccountRow(info, self.antispam.status(info.account_id))
        self._notify_account(row)
        return row

    def restore_account(self, account_id: str) -> AccountRow:
        self.antispam.restore(account_id)
        return AccountRow(self._account(account_id), self.antispam.status(account_id))

    def exclude_account(self, account_id: str, reason: str) -> AccountRow:
        self.antispam.exclude(account_id, reason or "excluded by the user")
        return AccountRow(self._account(account_id), self.antispam.status(account_id))

    async def remove_account(self, account_id: str) -> None:
        if account_id in self._running:
            raise BroadcastBusy(N_("core.busy.stop_first"))
        info = self._accounts.pop(account_id)
        self._save_accounts()
        self.antispam.forget(account_id)
        self.transports.remove(info)

    async def ask_spambot(self, account_id: str) -> str:
        try:
            return await self._ask_spambot(account_id)
        except FloodWait as exc:
            # Telegram's wait holds for the account, not only for this question: a broadcast
            # started next must wait it out too.
            self.antispam.on_flood_wait(account_id, exc.seconds, kind=exc.kind)
            raise
        except AccountUnusable as exc:
            self.antispam.on_fatal(account_id, exc.reason)
            raise

    async def _ask_spambot(self, account_id: str) -> str:
        running = self._running.get(account_id)
        if running is not None:
            # One session per account: a second client on the same session file would clash.
            return await running[0].transport.ask_spambot()
        transport = self.transports.transport(self._account(account_id))
        try:
            await transport.connect()
            return await transport.ask_spambot()
        finally:
            await transport.disconnect()

    def _account(self, account_id: str) -> AccountInfo:
        try:
            return self._accounts[account_id]
        except KeyError:
            raise KeyError(f"no account {account_id}") from None

    def _account_status_changed(self, status: AccountStatus) -> None:
        info = self._accounts.get(status.account_id)
        if info is not None:
            self._notify_account(AccountRow(info, status))

    def _notify_account(self, row: AccountRow) -> None:
        for callback in list(self._account_listeners):
            callback(row)

    def _load_accounts(self) -> dict[str, AccountInfo]:
        return load_accounts(self._accounts_path)

    def _save_accounts(self) -> None:
        save_accounts(self._accounts_path, self._accounts.values())

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

    async def close(self) -> None:
        """Stop broadcasts, then close the client and the local stores."""
        await self.stop_all()
        await self.add_account_cancel()
        await self.telemetry.flush()
        await self.telemetry.aclose()
        await self.client.aclose()
        await self.stop_heartbeats()
        self.journal.close()
        self.license_files.close()
        self.store.close()

    def _need_session(self) -> None:
        if not self._signed_in and not self._file_mode:
            raise NotSignedIn("sign in first")
