"""Run the reference backend inside another program: a uvicorn server in a background thread.

Used by ``tgflow --demo`` (the desktop starts its own local backend) and by the tests. The server
binds a free loopback port (port 0) and :attr:`EmbeddedServer.url` says which.
"""

from __future__ import annotations

import socket
import threading
from types import TracebackType

import uvicorn
from fastapi import FastAPI


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = threading.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await super().startup(sockets)
        finally:
            self.ready.set()


class EmbeddedServer:
    """``with EmbeddedServer(app) as server: ... server.url``."""

    def __init__(self, app: FastAPI, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.app = app
        self._server = _Server(
            uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on")
        )
        self._thread = threading.Thread(
            target=self._server.run, name="tgflow-embedded-server", daemon=True
        )
        self.url = ""

    def start(self, timeout: float = 30.0) -> EmbeddedServer:
        """Start serving; returns once the port is bound. Raises ``RuntimeError`` otherwise."""
        self._thread.start()
        if not self._server.ready.wait(timeout) or not self._server.servers:
            self._server.should_exit = True
            raise RuntimeError("the embedded server did not start")
        host, port = self._server.servers[0].sockets[0].getsockname()[:2]
        self.url = f"http://{host}:{port}"
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Stop serving and wait for the thread (idempotent)."""
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout)

    def __enter__(self) -> EmbeddedServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
