"""The accounts of :class:`app.core.Core`: add (Telegram login), restore, exclude, remove, ask.

A part of the core kept in its own module, like :mod:`app.core_license_file`; :class:`Core`
derives from :class:`CoreAccounts`, which keeps the state that ``Core.__init__`` sets up.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from .accounts_file import load_accounts, save_accounts
from .antispam import AccountStatus, AntiSpamWorker
from .broadcast import BroadcastWorker, Progress
from .catalog import N_, story
from .core_types import AccountRow, BroadcastBusy, LicenseUnusable
from .license_modules import MODULE_MULTI_ACCOUNT
from .transports.base import AccountInfo, AccountUnusable, FloodWait, LoginFlow, TransportFactory

log = logging.getLogger("tgflow.core")


class CoreAccounts:
    """The accounts half of the core (see :class:`app.core.Core`)."""

    transports: TransportFactory
    antispam: AntiSpamWorker
    _accounts_path: Path
    _accounts: dict[str, AccountInfo]
    _login: LoginFlow | None
    _account_listeners: list[Callable[[AccountRow], None]]
    _running: dict[str, tuple[BroadcastWorker, asyncio.Task[Progress]]]

    if TYPE_CHECKING:
        # Defined by LicenseFileMode; declared only, so nothing here can shadow it.
        def has_module(self, module: str) -> bool: ...

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
