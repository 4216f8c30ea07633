"""The window's stand-in for the :class:`~app.core.Core` while the core is still being built.

The core brings the whole license stack (httpx, cryptography, pydantic models, keyring): about
0.3 s of imports. The window does not wait for them: it is built and shown with this handle,
and the core is built on the engine thread meanwhile. :meth:`MainWindow.start` (the first thing
that asks the core for anything) runs once the core is there; from then on every attribute is the
core's own. ``config``, ``clock`` and ``transports`` are known from the start.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .clock import AsyncClock
from .core_config import CoreConfig
from .transports.base import TransportFactory

if TYPE_CHECKING:
    from .core import AccountRow, Core
    from .license_online import OnlineEvent


#: Longest the GUI waits for the core when asked for it before it was built.
BUILD_TIMEOUT_SECONDS = 30.0


class CoreNotReady(RuntimeError):
    """The core was asked for something before it was built."""


class DeferredCore:
    def __init__(
        self,
        config: CoreConfig,
        clock: AsyncClock,
        transports: TransportFactory,
        *,
        in_engine_thread: Callable[[], bool],
    ) -> None:
        self.config = config
        self.clock = clock
        self.transports = transports
        self._in_engine_thread = in_engine_thread
        self._core: Core | None = None
        self._ready = threading.Event()
        self._subscribers: list[Callable[[AccountRow], None]] = []
        self._online_subscribers: list[Callable[[OnlineEvent], None]] = []

    def attach(self, core: Core) -> None:
        """Called on the engine thread by the code that built the core."""
        self._core = core
        for callback in self._subscribers:
            core.subscribe_accounts(callback)
        self._subscribers.clear()
        for listener in self._online_subscribers:
            core.subscribe_online(listener)
        self._online_subscribers.clear()
        self._ready.set()

    # The view-models subscribe while the window is being built (engine thread, like attach).
    def subscribe_accounts(self, callback: Callable[[AccountRow], None]) -> None:
        if self._core is not None:
            self._core.subscribe_accounts(callback)
        else:
            self._subscribers.append(callback)

    def subscribe_online(self, callback: Callable[[OnlineEvent], None]) -> None:
        if self._core is not None:
            self._core.subscribe_online(callback)
        else:
            self._online_subscribers.append(callback)

    def unsubscribe_accounts(self, callback: Callable[[AccountRow], None]) -> None:
        if self._core is not None:
            self._core.unsubscribe_accounts(callback)
        elif callback in self._subscribers:
            self._subscribers.remove(callback)

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    def wait(self, timeout: float | None = None) -> Core:
        if not self._ready.wait(timeout) or self._core is None:
            raise CoreNotReady("the core is not built yet")
        return self._core

    def __getattr__(self, name: str) -> Any:
        core = self._core
        if core is None:
            if self._in_engine_thread():
                # The build runs on this very thread: waiting would never end.
                raise CoreNotReady(f"the core is not built yet (asked for {name!r})")
            # A click in the window's first fraction of a second: wait for the build (it is the
            # engine's first task once the window is up) rather than fail the click.
            core = self.wait(BUILD_TIMEOUT_SECONDS)
        return getattr(core, name)
