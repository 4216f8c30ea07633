"""A real uvicorn server on an ephemeral loopback port, in a background thread."""

from __future__ import annotations

from server_stub.embedded import EmbeddedServer as LiveServer

__all__ = ["LiveServer"]
