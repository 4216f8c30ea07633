"""License-file mode of :class:`app.core.Core`: activate, replace, deactivate, modules.

A part of the core kept in its own module (the core would pass 500 lines); :class:`Core` derives
from :class:`LicenseFileMode`. The Qt-free service underneath is :mod:`app.license_file`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from agent.client import AsyncLicenseClient
from agent.journal import SettleOutcome, UsageBackend, UsageJournal

from .catalog import N_, story
from .clock import AsyncClock
from .core_config import CoreConfig
from .core_types import LicenseSnapshot, OnlineStatus
from .license_file import LicenseFileRefused, LicenseFileService
from .license_online import HeartbeatTimer, OnlineEvent, OnlineLicense

log = logging.getLogger("tgflow.core")


class LicenseFileMode:
    """The license-file half of the core's session (see :class:`app.core.Core`)."""

    license_files: LicenseFileService
    _file_mode: bool
    _signed_in: bool
    data_dir: Path
    clock: AsyncClock
    journal: UsageJournal
    client: AsyncLicenseClient

    def _init_license_files(
        self,
        config: CoreConfig,
        version: str,
        *,
        fingerprint: str,
        server_id: str,
        timer: HeartbeatTimer,
    ) -> None:
        # The file, and its messages counted on this machine.
        self.license_files = LicenseFileService(
            self.data_dir,
            api_base_url=config.api_base_url,
            pins=config.pins,
            domain=config.install_domain,
            version=version,
            clock=self.clock,
            fingerprint=fingerprint,
            server_id=server_id,
        )
        self._file_mode = False
        online = self.license_files.online
        self.online: OnlineLicense | None = None
        if online is not None:
            self.online = OnlineLicense(
                online, clock=self.clock, timer=timer, modules=self._modules_in_use
            )
        self._online_listeners: list[Callable[[OnlineEvent], None]] = []

    def _modules_in_use(self) -> tuple[str, ...]:
        lic = self.license_files.current
        return tuple(sorted(lic.modules)) if lic is not None else ()

    def subscribe_online(self, callback: Callable[[OnlineEvent], None]) -> None:
        """``callback(event)`` (on the engine thread) after each word from the license server."""
        if callback not in self._online_listeners:
            self._online_listeners.append(callback)

    def online_status(self) -> OnlineStatus | None:
        """The License panel's line about the license server (``None``: no server set)."""
        return None if self.online is None else self.online.status

    def _usage(self) -> tuple[UsageJournal, UsageBackend]:
        """Where batches are reserved: the server, or this machine in license-file mode."""
        if self._file_mode:
            return self.license_files.journal, self.license_files.usage
        return self.journal, self.client

    @property
    def file_mode(self) -> bool:
        """Licensed by an activated license file rather than an e-mail sign-in."""
        return self._file_mode

    # The core's own methods these rely on (defined by Core).
    async def sign_out(self) -> None:
        raise NotImplementedError

    async def stop_all(self) -> None:
        raise NotImplementedError

    async def settle_journal(self) -> list[SettleOutcome]:
        raise NotImplementedError

    async def license_snapshot(self) -> LicenseSnapshot:
        raise NotImplementedError

    async def activate_license_file(self, path: Path, license_key: str) -> LicenseSnapshot:
        """Verify the license file at ``path`` and run in license-file mode (no account).

        Raises :class:`app.license_file.LicenseFileRefused` with the reason.
        """
        if self._signed_in:
            await self.sign_out()
        text = self.license_files.read(path)
        lic = self.license_files.activate(text, license_key)
        story(log, N_("log.license_file_activated"), customer=lic.customer_name)
        return await self._enter_file_mode()

    async def activate_kept_license_file(self) -> LicenseSnapshot:
        """Run in license-file mode with the file kept from an earlier run, verified again."""
        self.license_files.check()
        return await self._enter_file_mode()

    async def replace_license_file(self, path: Path) -> LicenseSnapshot:
        """A newer file of the license in use, chosen by the user."""
        return await self.newer_license_file(self.license_files.read(path))

    async def newer_license_file(self, text: str, *, online: bool = False) -> LicenseSnapshot:
        """A newer version of the license file in use arrived (by hand, or from a heartbeat:
        ``online``): it replaces the kept one; an older version is refused."""
        lic = self.license_files.replace(text)
        key = N_("log.license_online_version") if online else N_("log.license_file_replaced")
        story(log, key, version=lic.file_version)
        return await self.license_snapshot()

    async def deactivate_license_file(self) -> None:
        """Stop the broadcasts and forget the license file."""
        await self.stop_all()
        await self.stop_heartbeats()
        self.license_files.deactivate()
        if self.online is not None:
            self.online.status = OnlineStatus()
        self._file_mode = False
        story(log, N_("log.license_file_deactivated"))

    async def _enter_file_mode(self) -> LicenseSnapshot:
        self._file_mode = True
        await self.settle_journal()
        if self.online is not None:
            # Activates this machine online (once: the agent keeps it), then heartbeats.
            self.online.start(self._online_event)
        return await self.license_snapshot()

    async def stop_heartbeats(self) -> None:
        if self.online is not None:
            await self.online.stop()

    async def _online_event(self, event: OnlineEvent) -> None:
        if event.refused_state is not None:
            await self.stop_all()
            try:
                self.license_files.check()
            except LicenseFileRefused as exc:
                story(log, N_("log.license_online_refused"), level=logging.WARNING, reason=exc.why)
        for callback in list(self._online_listeners):
            callback(event)

    def _file_snapshot(self) -> LicenseSnapshot:
        """The License panel in license-file mode, with the license server's line."""
        return replace(self.license_files.snapshot(), online=self.online_status())

    def has_module(self, module: str) -> bool:
        """Whether the license allows ``module``; every module with an e-mail account."""
        lic = self.license_files.current
        return not self._file_mode or (lic is not None and lic.has_module(module))
