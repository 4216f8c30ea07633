"""The suppression list's logic: who is never sent to again, from any list, and why.

Entries come from three places: Telegram saying a recipient blocked the account (the worker adds
them), the user (:meth:`SuppressionViewModel.add`), and CSV imports that mark people as opted out
(the broadcast session adds them). The user can take any entry off again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from PyQt6.QtCore import QObject, pyqtSignal

from app.engine import Engine
from app.i18n import N_, Translator

from .base import EngineBound

if TYPE_CHECKING:
    from app.broadcast_store import Suppressed
    from app.core import Core

#: The reasons' labels, by :class:`~app.broadcast_store.SuppressionReason` value.
REASON_KEYS: Final = {
    "blocked": N_("suppression.reason.blocked"),
    "user": N_("suppression.reason.user"),
    "opt_out": N_("suppression.reason.opt_out"),
}


class SuppressionViewModel(EngineBound):
    #: The whole list (``list[Suppressed]``), newest first.
    changed = pyqtSignal(list)
    #: (added, problems): after :meth:`add`; problems are already in the window's language.
    added = pyqtSignal(int, list)
    failed = pyqtSignal(str)

    def __init__(
        self, engine: Engine, core: Core, translator: Translator, parent: QObject | None = None
    ) -> None:
        super().__init__(engine, translator, parent)
        self._core = core
        self._entries: list[Suppressed] = []
        self.changed.connect(self._keep)

    @property
    def entries(self) -> list[Suppressed]:
        return list(self._entries)

    def _keep(self, entries: list[Suppressed]) -> None:
        self._entries = list(entries)

    def describe_reason(self, reason: str) -> str:
        key = REASON_KEYS.get(reason)
        return self._tr.tr(key) if key else reason

    def refresh(self) -> bool:
        return self.call(self._core.suppressed, self.changed.emit, what="list suppressed")

    def add(self, text: str) -> bool:
        """Put the recipients written in ``text`` (as in a pasted list) on the list."""
        from app.broadcast_store import SuppressionReason
        from app.recipients import parse_recipients_text

        core = self._core
        tr = self._tr.tr

        def add() -> tuple[int, list[str], list[Suppressed]]:
            parsed = parse_recipients_text(text)
            added = core.suppress(list(parsed.recipients), SuppressionReason.USER)
            problems = [
                tr("broadcast.import.error", line=p.line, value=p.value, reason=p.reason)
                for p in parsed.errors
            ]
            return added, problems, core.suppressed()

        def done(result: tuple[int, list[str], list[Suppressed]]) -> None:
            added, problems, entries = result
            self.changed.emit(entries)
            self.added.emit(added, problems)

        return self.call(add, done, self.failed.emit, what="suppress")

    def add_recipients(self, recipients: list[str]) -> bool:
        """Put recipients already in normal form (rows of the status table) on the list."""
        from app.broadcast_store import SuppressionReason

        core = self._core

        def add() -> tuple[int, list[Suppressed]]:
            return core.suppress(recipients, SuppressionReason.USER), core.suppressed()

        def done(result: tuple[int, list[Suppressed]]) -> None:
            self.changed.emit(result[1])
            self.added.emit(result[0], [])

        return self.call(add, done, self.failed.emit, what="suppress")

    def remove(self, recipients: list[str]) -> bool:
        """Take ``recipients`` off the list: later broadcasts may send to them again."""
        core = self._core

        def remove() -> list[Suppressed]:
            core.unsuppress(recipients)
            return core.suppressed()

        return self.call(remove, self.changed.emit, self.failed.emit, what="unsuppress")

    def report_error(self, message: str) -> None:
        self.failed.emit(message)
