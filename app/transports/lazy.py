"""A transport factory that imports its implementation on first use.

kurigram takes most of a second to import; the window must not wait for it. The first use
happens on the engine thread (adding an account, a broadcast), never on the GUI thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from .base import AccountInfo, LoginFlow, Transport, TransportFactory


class LazyTransportFactory:
    def __init__(self, kind: str, load: Callable[[], TransportFactory]) -> None:
        self.kind = kind
        self._load = load
        self._factory: TransportFactory | None = None
        self._lock = threading.Lock()

    def _real(self) -> TransportFactory:
        with self._lock:
            if self._factory is None:
                self._factory = self._load()
            return self._factory

    def login_flow(self) -> LoginFlow:
        return self._real().login_flow()

    def transport(self, account: AccountInfo) -> Transport:
        return self._real().transport(account)

    def remove(self, account: AccountInfo) -> None:
        self._real().remove(account)
