"""A view-model whose work on the engine runs one piece at a time: what the user asks for while
other work runs (a heartbeat's refresh, a poll's reload) waits its turn and is never dropped;
a reload asked for meanwhile runs once, after it."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from PyQt6.QtCore import QObject, pyqtSignal

from app.engine import Engine
from app.i18n import Translator

from .base import EngineBound


class QueuedWork(EngineBound):
    busy_changed = pyqtSignal(bool)
    #: A short message for the user, in the window's language.
    failed = pyqtSignal(str)

    def __init__(
        self, engine: Engine, translator: Translator, parent: QObject | None = None
    ) -> None:
        super().__init__(engine, translator, parent)
        self._busy = False
        #: A reload was asked for while busy: once the work running ends.
        self._stale = False
        #: The user's actions asked for while other work ran: they run in turn.
        self._pending: deque[Callable[[], bool]] = deque()

    @property
    def busy(self) -> bool:
        return self._busy

    def _reload(self) -> bool:
        """Start reloading what the panel shows (``False``: the engine has stopped)."""
        raise NotImplementedError

    def _act(self, start: Callable[[], bool]) -> bool:
        """Run an action now, or after the work running: an action is never dropped because
        something else was busy. ``False``: the engine has stopped (the program is closing)."""
        if self._busy:
            self._pending.append(start)
            return True
        self._set_busy(True)
        if start():
            return True
        self._set_busy(False)
        return False

    def _next(self) -> None:
        """The work running ended: start what waited (the user's actions, then a reload)."""
        while self._pending:
            if self._pending.popleft()():
                return
        if self._stale:
            self._stale = False
            if self._reload():
                return
        self._set_busy(False)

    def _failed(self, message: str) -> None:
        self.failed.emit(message)
        self._next()

    def report_error(self, message: str) -> None:
        self.failed.emit(message)

    def _set_busy(self, busy: bool) -> None:
        if busy != self._busy:
            self._busy = busy
            self.busy_changed.emit(busy)
