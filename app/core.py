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
from .antispam import AntiSpamWorker
from .broadcast import BroadcastWorker, Progress, reconcile
from .broadcast_store import BroadcastStore
from .catalog import N_, story
from .clock import AsyncClock, SystemAsyncClock
from .core_accounts import CoreAccounts
from .core_billing import CoreBilling
from .core_broadcasts import CoreBroadcasts
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
    PurchaseRefused,
)
from .license_online import ClockTimer, HeartbeatTimer
from .license_snapshot import offline_snapshot, online_snapshot
from .problems import problem_reason
from .telemetry import TelemetryClient
from .transports.base import AccountInfo, LoginFlow, TransportFactory

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
    "PurchaseRefused",
]


class Core(CoreAccounts, CoreBroadcasts, CoreBilling, LicenseFileMode):
    """The desktop's services, on the engine loop. Create it inside that loop.

    The accounts, the broadcasts, billing and the license-file mode are parts of the core kept in
    their own modules (:mod:`app.core_accounts`, :mod:`app.core_broadcasts`,
    :mod:`app.core_billing`, :mod:`app.core_license_file`); this class builds the state they
    share and owns the session.
    """

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

    async def close(self) -> None:
        """Stop broadcasts, then close the client and the local stores."""
        await self.stop_all()
        await self.add_account_cancel()
        await self.telemetry.flush()
        await self.telemetry.aclose()
        await self.client.aclose()
        await self.close_store_checkout()
        await self.stop_heartbeats()
        self.journal.close()
        self.license_files.close()
        self.store.close()

    def _need_session(self) -> None:
        if not self._signed_in and not self._file_mode:
            raise NotSignedIn("sign in first")
