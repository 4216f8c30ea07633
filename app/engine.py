"""The engine thread: the one home of all asyncio work (license client, Telegram transports).

The GUI thread never awaits anything. It hands a coroutine to :meth:`Engine.submit` and gets the
result back as a callback run in the GUI thread (a queued Qt signal carries it across).
Objects living on the engine loop report events to the GUI the same way, through
:meth:`Engine.to_gui`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from PyQt6.QtCore import QObject, Qt, pyqtSignal, pyqtSlot

log = logging.getLogger("tgflow.engine")

_T = TypeVar("_T")


class EngineStopped(RuntimeError):
    """The engine is not running (any more)."""


class Engine(QObject):
    """One worker thread with its own asyncio event loop.

    Create it in the GUI thread; callbacks given to :meth:`submit` and functions given to
    :meth:`to_gui` run in the thread that created it.
    """

    _deliver = pyqtSignal(object)
    #: A task submitted without an error callback failed: (what, exception).
    failed = pyqtSignal(str, object)

    def __init__(self, parent: QObject | None = None, *, name: str = "tgflow-engine") -> None:
        super().__init__(parent)
        # Queued even when emitted from the GUI thread: a task that finishes before submit()
        # attaches its callback would otherwise run on_done at once, ahead of answers the
        # engine had already queued, and the GUI would see them out of order. (PyQt6 takes
        # the connection type; its stubs omit it.)
        self._deliver.connect(self._run_delivered, type=Qt.ConnectionType.QueuedConnection)  # type: ignore[call-arg]
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._stopped = False
        self._thread.start()
        self._ready.wait()

    # --- engine side ----------------------------------------------------------------------------

    def _main(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.call_soon(self._ready.set)
        try:
            self._loop.run_forever()
        finally:
            pending = asyncio.all_tasks(self._loop)
            for task in pending:
                task.cancel()
            if pending:
                self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            self._loop.run_until_complete(self._loop.shutdown_asyncgens())
            self._loop.close()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The engine's event loop (use it only from the engine thread, or via submit)."""
        return self._loop

    def in_engine_thread(self) -> bool:
        """Whether the caller runs on the engine thread."""
        return threading.current_thread() is self._thread

    # --- GUI side -------------------------------------------------------------------------------

    def submit(
        self,
        coro: Coroutine[Any, Any, _T],
        on_done: Callable[[_T], None] | None = None,
        on_error: Callable[[BaseException], None] | None = None,
        *,
        what: str = "",
    ) -> concurrent.futures.Future[_T]:
        """Run ``coro`` on the engine loop; call ``on_done``/``on_error`` in the GUI thread.

        A failure without ``on_error`` is logged and reported through :attr:`failed`.
        Cancellation (engine stopping) calls neither.
        """
        if self._stopped:
            coro.close()
            raise EngineStopped("the engine has stopped")
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        label = what or getattr(coro, "__qualname__", "task")

        def finished(fut: concurrent.futures.Future[_T]) -> None:
            if fut.cancelled():
                return
            exc = fut.exception()
            if exc is None:
                if on_done is not None:
                    result = fut.result()
                    self.to_gui(lambda: on_done(result))
            elif on_error is not None:
                self.to_gui(lambda: on_error(exc))
            else:
                log.error("%s failed: %s: %s", label, type(exc).__name__, exc)
                self.to_gui(lambda: self.failed.emit(label, exc))

        future.add_done_callback(finished)
        return future

    def call_soon(self, fn: Callable[[], object]) -> None:
        """Run a plain function on the engine thread, soon."""
        if not self._stopped:
            self._loop.call_soon_threadsafe(fn)

    def to_gui(self, fn: Callable[[], object]) -> None:
        """Run ``fn`` in the GUI thread (safe to call from any thread)."""
        self._deliver.emit(fn)

    @pyqtSlot(object)
    def _run_delivered(self, fn: Callable[[], object]) -> None:
        try:
            fn()
        except Exception:
            # A GUI callback must never take the program down; the log keeps the details.
            log.exception("a GUI callback failed")

    def stop(self, timeout: float = 10.0) -> None:
        """Cancel everything still running on the loop and end the thread."""
        if self._stopped:
            return
        self._stopped = True
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout)
