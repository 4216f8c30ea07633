"""Agent fixtures: a real backend (SQLite, real uvicorn) and a hit-recording HTTP server."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from tests.helpers.agent_backend import (
    AgentBackend,
    HitRecorder,
    RequestCounter,
    _RecordingHandler,
    running_backend,
)
from tests.helpers.fake_marketplace import FakeMarketplace, World, make_world
from tests.helpers.license_files import Installation, Vendor, installation, vendor


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[AgentBackend]:
    with running_backend(tmp_path / "server") as running:
        yield running


@pytest.fixture
def counting_client() -> Iterator[tuple[httpx.Client, RequestCounter]]:
    counter = RequestCounter()
    with httpx.Client(timeout=10, event_hooks={"request": [counter]}) as client:
        yield client, counter


@pytest.fixture
def hit_recorder() -> Iterator[Callable[[bytes], HitRecorder]]:
    """Factory: start a recorder serving ``body`` on an ephemeral loopback port."""
    servers: list[tuple[ThreadingHTTPServer, threading.Thread]] = []

    def start(body: bytes) -> HitRecorder:
        hits: list[str] = []
        handler = type("Handler", (_RecordingHandler,), {"hits": hits, "body": body})
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        thread = threading.Thread(target=httpd.serve_forever, daemon=True)
        thread.start()
        servers.append((httpd, thread))
        return HitRecorder(f"http://127.0.0.1:{httpd.server_address[1]}", hits)

    yield start
    for httpd, thread in servers:
        httpd.shutdown()
        httpd.server_close()
        thread.join(10)


# The marketplace verifier's tests (test_marketplace_jwks.py, test_marketplace_verifier.py): a
# stand-in marketplace on an ephemeral port and an app-side world built against it.
@pytest.fixture
def market() -> Iterator[FakeMarketplace]:
    with FakeMarketplace() as server:
        yield server


@pytest.fixture
def world(market: FakeMarketplace, tmp_path: Path) -> Iterator[World]:
    with make_world(market, tmp_path / "app") as built:
        yield built


# --- license files (tests/helpers/license_files.py) --------------------------------------------


@pytest.fixture
def seller(tmp_path: Path) -> Vendor:
    """A vendor: a server key store whose ``license`` key signs license files."""
    return vendor(tmp_path / "server-keys")


@pytest.fixture
def offline_site(tmp_path: Path, seller: Vendor) -> Installation:
    """An installation that never reached the server: it has only the seller's pin."""
    return installation(tmp_path / "offline", [seller.pin])
