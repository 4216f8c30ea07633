"""What every view-model shares: running work on the engine and getting the answer back safely."""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from PyQt6 import sip
from PyQt6.QtCore import QObject

from app.engine import Engine, EngineStopped
from app.i18n import Translator

from .errors import describe_error

log = logging.getLogger("tgflow.ui")

_T = TypeVar("_T")


async def _call(fn: Callable[[], _T]) -> _T:
    return fn()


class EngineBound(QObject):
    """A QObject whose work runs on the engine thread and whose answers arrive in the GUI thread.

    An answer that arrives after the object was deleted (its window closed) is dropped.
    """

    def __init__(
        self, engine: Engine, translator: Translator, parent: QObject | None = None
    ) -> None:
        super().__init__(parent)
        self._engine = engine
        self._tr = translator

    @property
    def translator(self) -> Translator:
        return self._tr

    def _alive(self) -> bool:
        return not sip.isdeleted(self)

    def _guard(self, fn: Callable[[_T], None]) -> Callable[[_T], None]:
        def guarded(value: _T) -> None:
            if self._alive():
                fn(value)

        return guarded

    def submit(
        self,
        coro: Coroutine[Any, Any, _T],
        on_done: Callable[[_T], None],
        on_error: Callable[[str], None] | None = None,
        *,
        what: str,
    ) -> bool:
        """Run ``coro`` on the engine; ``on_done(result)`` or ``on_error(message)`` in the GUI.

        ``on_error`` defaults to :meth:`report_error`. Returns ``False`` when the engine has
        stopped (the program is closing) and nothing was started.
        """
        fail = on_error or self.report_error

        def failed(exc: BaseException) -> None:
            fail(self.describe(exc, what))

        try:
            self._engine.submit(coro, self._guard(on_done), self._guard(failed), what=what)
        except EngineStopped:
            return False
        return True

    def call(
        self,
        fn: Callable[[], _T],
        on_done: Callable[[_T], None],
        on_error: Callable[[str], None] | None = None,
        *,
        what: str,
    ) -> bool:
        """Like :meth:`submit`, for a plain (non-async) function of the core."""
        return self.submit(_call(fn), on_done, on_error, what=what)

    def to_gui(self, fn: Callable[[], object]) -> None:
        """From the engine thread: run ``fn`` in the GUI thread unless this object is gone."""

        def guarded() -> None:
            if self._alive():
                fn()

        self._engine.to_gui(guarded)

    def describe(self, exc: BaseException, what: str = "") -> str:
        """A short message for ``exc`` in the window's language (never a traceback)."""
        return describe_error(exc, self._tr, what=what)

    def report_error(self, message: str) -> None:
        """Where failures go when the caller gave no ``on_error``; subclasses emit a signal."""
        log.warning("%s: %s", type(self).__name__, message)
