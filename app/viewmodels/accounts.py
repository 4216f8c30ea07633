"""The Accounts panel's logic: the account list with live anti-spam states, and adding one.

Adding an account is Telegram's own login: phone → code → (two-step password). Each step runs on
the engine; the panel shows the next step when the signal for it arrives.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from PyQt6.QtCore import QObject, pyqtSignal

from app.engine import Engine
from app.i18n import Translator

from .base import EngineBound

if TYPE_CHECKING:
    from app.antispam import AccountStatus
    from app.core import AccountRow, Core


class AddStep:
    """Where the add-account wizard stands."""

    IDLE = "idle"
    PHONE_SENT = "phone_sent"  # waiting for the code to be requested
    CODE = "code"  # Telegram sent a code; the user types it
    CODE_SENT = "code_sent"
    PASSWORD = "password"  # the account has two-step verification
    PASSWORD_SENT = "password_sent"


@dataclass(frozen=True)
class _PasswordNeeded:
    hint: str


async def _code_step(core: Core, code: str) -> AccountRow | _PasswordNeeded:
    """The code step on the engine; a two-step password request is its answer, not an error."""
    from app.transports.base import PasswordRequired

    try:
        return await core.add_account_code(code)
    except PasswordRequired as exc:
        return _PasswordNeeded(exc.hint or "")


class AccountsViewModel(EngineBound):
    #: Every account (``list[AccountRow]``), in the order they were added.
    accounts_changed = pyqtSignal(list)
    #: Telegram sent the login code; ask for it.
    code_requested = pyqtSignal()
    #: The account has two-step verification; ask for the password (the hint may be "").
    password_requested = pyqtSignal(str)
    #: The new account (``AccountRow``).
    account_added = pyqtSignal(object)
    #: A step of adding failed; the wizard stays on the step so the user can correct it.
    add_failed = pyqtSignal(str)
    #: (account id, @SpamBot's answer).
    spambot_reply = pyqtSignal(str, str)
    failed = pyqtSignal(str)
    #: The wizard moved (``AddStep``).
    step_changed = pyqtSignal(str)

    def __init__(
        self,
        engine: Engine,
        core: Core,
        translator: Translator,
        *,
        api_credentials_missing: bool = False,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(engine, translator, parent)
        self._core = core
        self._rows: dict[str, AccountRow] = {}
        # Every answer about an account is stamped on the engine thread, in the order the engine
        # saw it; the GUI keeps, per account, the stamp of what it shows. Answers travel to the
        # GUI in separate hops (a refresh's snapshot one loop turn after it was read, a status
        # change at once), so an older snapshot can land after a newer change and must not
        # overwrite it.
        self._stamps = itertools.count(1)  # advanced on the engine thread only
        self._shown: dict[str, int] = {}  # GUI thread: account id → stamp of what is shown
        self._step = AddStep.IDLE
        self._api_credentials_missing = api_credentials_missing
        engine.call_soon(lambda: core.subscribe_accounts(self._on_engine_row))

    # --- the list -------------------------------------------------------------------------------

    @property
    def rows(self) -> list[AccountRow]:
        return list(self._rows.values())

    def row(self, account_id: str) -> AccountRow | None:
        return self._rows.get(account_id)

    def now(self) -> datetime:
        """The core's clock (the one cooldowns are measured on)."""
        return self._core.clock.now()

    def refresh(self) -> bool:
        return self.call(
            lambda: (next(self._stamps), self._core.accounts()), self._got_rows, what="accounts"
        )

    def _got_rows(self, stamped: tuple[int, list[AccountRow]]) -> None:
        stamp, rows = stamped
        fresh: dict[str, AccountRow] = {}
        for row in rows:
            account_id = row.info.account_id
            if self._shown.get(account_id, 0) < stamp:
                fresh[account_id] = row
                self._shown[account_id] = stamp
            elif account_id in self._rows:  # changed after the snapshot was read: keep it
                fresh[account_id] = self._rows[account_id]
            # else: removed after the snapshot was read; it stays removed
        for account_id, row in self._rows.items():
            if account_id not in fresh and self._shown.get(account_id, 0) > stamp:
                fresh[account_id] = row  # added after the snapshot was read
        self._rows = fresh
        self.accounts_changed.emit(self.rows)

    def _on_engine_row(self, row: AccountRow) -> None:
        # Engine thread: stamp the row, hand it to the GUI thread and do nothing else here.
        stamped = (next(self._stamps), row)
        self.to_gui(lambda: self._update_row(stamped))

    def _update_row(self, stamped: tuple[int, AccountRow]) -> None:
        stamp, row = stamped
        account_id = row.info.account_id
        if self._shown.get(account_id, 0) > stamp:
            return  # a newer answer about this account is already shown
        self._shown[account_id] = stamp
        self._rows[account_id] = row
        self.accounts_changed.emit(self.rows)

    def _stamped(self, fn: Callable[[], AccountRow]) -> Callable[[], tuple[int, AccountRow]]:
        """``fn`` for the engine thread, its answer stamped after it ran."""

        def run() -> tuple[int, AccountRow]:
            row = fn()
            return next(self._stamps), row

        return run

    def restore(self, account_id: str) -> bool:
        return self.call(
            self._stamped(lambda: self._core.restore_account(account_id)),
            self._update_row,
            what="restore",
        )

    def exclude(self, account_id: str, reason: str = "") -> bool:
        # No reason given: the core stores its fixed English form, which every language shows
        # in its own words (telegram_text); a stored translation would keep the old language.
        reason = reason.strip()
        return self.call(
            self._stamped(lambda: self._core.exclude_account(account_id, reason)),
            self._update_row,
            what="exclude",
        )

    def remove(self, account_id: str) -> bool:
        async def remove_stamped() -> int:
            await self._core.remove_account(account_id)
            return next(self._stamps)

        def removed(stamp: int) -> None:
            self._shown[account_id] = stamp  # an older snapshot must not bring it back
            self._rows.pop(account_id, None)
            self.accounts_changed.emit(self.rows)

        return self.submit(remove_stamped(), removed, what="remove account")

    def ask_spambot(self, account_id: str) -> bool:
        return self.submit(
            self._core.ask_spambot(account_id),
            lambda text: self.spambot_reply.emit(account_id, text),
            what="ask @SpamBot",
        )

    def report_error(self, message: str) -> None:
        self.failed.emit(message)

    # --- adding ---------------------------------------------------------------------------------

    @property
    def step(self) -> str:
        return self._step

    @property
    def api_credentials_missing(self) -> bool:
        """Real Telegram needs ``[telegram] api_id`` and ``api_hash``, and they are not set."""
        return self._api_credentials_missing

    def _set_step(self, step: str) -> None:
        if step != self._step:
            self._step = step
            self.step_changed.emit(step)

    def add_start(self, phone: str) -> bool:
        """Step 1: ask Telegram for a login code sent to ``phone``."""
        if self._api_credentials_missing:
            self.add_failed.emit(self._tr.tr("accounts.add.need_api"))
            return False
        phone = phone.strip()
        if not phone:
            self.add_failed.emit(self._tr.tr("accounts.add.need_phone"))
            return False
        self._set_step(AddStep.PHONE_SENT)

        def sent(_result: None) -> None:
            self._set_step(AddStep.CODE)
            self.code_requested.emit()

        return self.submit(
            self._core.add_account_start(phone),
            sent,
            lambda message: self._add_failed(AddStep.IDLE, message),
            what="send login code",
        )

    def add_code(self, code: str) -> bool:
        """Step 2: the code Telegram sent."""
        code = code.strip()
        if not code:
            self.add_failed.emit(self._tr.tr("accounts.add.need_code"))
            return False
        self._set_step(AddStep.CODE_SENT)
        return self.submit(
            _code_step(self._core, code),
            self._code_done,
            lambda message: self._add_failed(AddStep.CODE, message),
            what="login code",
        )

    def add_password(self, password: str) -> bool:
        """Step 3: the two-step verification password."""
        if not password:
            self.add_failed.emit(self._tr.tr("accounts.add.need_password"))
            return False
        self._set_step(AddStep.PASSWORD_SENT)
        return self.submit(
            self._core.add_account_password(password),
            self._added,
            lambda message: self._add_failed(AddStep.PASSWORD, message),
            what="two-step password",
        )

    def add_cancel(self) -> None:
        self._set_step(AddStep.IDLE)
        self.submit(self._core.add_account_cancel(), lambda _r: None, what="cancel adding")

    def _added(self, row: AccountRow) -> None:
        self._set_step(AddStep.IDLE)
        if row.info.account_id not in self._rows:
            # The core also reports the new account to subscribers (stamped, usually already
            # here); this answer carries no stamp, so it only fills a gap and never overwrites.
            self._rows[row.info.account_id] = row
            self.accounts_changed.emit(self.rows)
        self.account_added.emit(row)

    def _code_done(self, result: AccountRow | _PasswordNeeded) -> None:
        if isinstance(result, _PasswordNeeded):
            self._set_step(AddStep.PASSWORD)
            self.password_requested.emit(result.hint)
        else:
            self._added(result)

    def _add_failed(self, step: str, message: str) -> None:
        self._set_step(step)
        self.add_failed.emit(message)


@dataclass(frozen=True)
class Badge:
    """How an account's state is shown: ``state`` (for the colour), the text and a tooltip."""

    state: str
    text: str
    tooltip: str
    #: A Cooldown whose end has passed (the list should be refreshed).
    expired: bool = False


def describe_status(status: AccountStatus, now: datetime, tr: Translator) -> Badge:
    """The badge of ``status`` at ``now``: Active, Cooldown with the time left, Excluded + why."""
    from app.antispam import AccountState

    from .formatting import format_duration
    from .telegram_text import telegram_text

    if status.state is AccountState.COOLDOWN:
        left = 0.0 if status.until is None else (status.until - now).total_seconds()
        return Badge(
            "cooldown",
            tr.tr("account.state.cooldown", left=format_duration(left, tr)),
            telegram_text(status.reason, tr),
            expired=left <= 0,
        )
    if status.state is AccountState.EXCLUDED:
        return Badge("excluded", tr.tr("account.state.excluded"), telegram_text(status.reason, tr))
    return Badge("active", tr.tr("account.state.active"), "")
