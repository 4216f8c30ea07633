"""License-file mode of :class:`app.core.Core`: activate, replace, deactivate, modules.

A part of the core kept in its own module (the core would pass 500 lines); :class:`Core` derives
from :class:`LicenseFileMode`. The Qt-free service underneath is :mod:`app.license_file`.
"""

from __future__ import annotations

import logging
from pathlib import Path

from agent.client import AsyncLicenseClient
from agent.journal import SettleOutcome, UsageBackend, UsageJournal

from .catalog import N_, story
from .clock import AsyncClock
from .core_config import CoreConfig
from .core_types import LicenseSnapshot
from .license_file import LicenseFileService

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

    def _init_license_files(self, config: CoreConfig, version: str) -> None:
        # The file, and its messages counted on this machine.
        self.license_files = LicenseFileService(
            self.data_dir,
            api_base_url=config.api_base_url,
            pins=config.pins,
            domain=config.install_domain,
            version=version,
            clock=self.clock,
        )
        self._file_mode = False

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

    async def newer_license_file(self, text: str) -> LicenseSnapshot:
        """A newer version of the license file in use arrived (by hand, or from a heartbeat):
        it replaces the kept one; an older version is refused."""
        lic = self.license_files.replace(text)
        story(log, N_("log.license_file_replaced"), version=lic.file_version)
        return await self.license_snapshot()

    async def deactivate_license_file(self) -> None:
        """Stop the broadcasts and forget the license file."""
        await self.stop_all()
        self.license_files.deactivate()
        self._file_mode = False
        story(log, N_("log.license_file_deactivated"))

    async def _enter_file_mode(self) -> LicenseSnapshot:
        self._file_mode = True
        await self.settle_journal()
        return await self.license_snapshot()

    def has_module(self, module: str) -> bool:
        """Whether the license allows ``module``; every module with an e-mail account."""
        lic = self.license_files.current
        return not self._file_mode or (lic is not None and lic.has_module(module))
