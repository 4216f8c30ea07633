"""Agent fixtures: a real backend (SQLite, real uvicorn) and a hit-recording HTTP server."""

from __future__ import annotations

import secrets
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from server_stub.app import create_app
from server_stub.clock import FakeClock as ServerClock
from server_stub.config import Settings
from server_stub.keys import SigningKey
from server_stub.wiring import Services, build_services
from tests.agent.test_marketplace_server import FakeMarketplace, World, make_world
from tests.helpers.api import bearer, fingerprint, register
from tests.helpers.license_files import Installation, Vendor, installation, vendor
from tests.helpers.live_server import LiveServer


@dataclass
class AgentBackend:
    """A running reference backend (SQLite) and what an agent test needs from it."""

    url: str
    client: httpx.Client
    clock: ServerClock
    services: Services
    server: LiveServer
    stopped: bool = False

    def signing_key(self, purpose: str) -> SigningKey:
        """The server's active ``auth`` or ``license`` key, private half included."""
        return self.services.ctx.keys.signing_key(purpose)

    def stop(self) -> None:
        """Stop the HTTP server (the port then refuses connections)."""
        if not self.stopped:
            self.stopped = True
            self.server.__exit__(None, None, None)

    def session(self) -> Session:
        """Register a new user on a new device over HTTP; return its token, lease and device."""
        fp = fingerprint()
        body = register(self.client, email=f"agent-{secrets.token_hex(4)}@example.com", fp=fp)
        r = self.client.get("/license", headers=bearer(body["token"]))
        assert r.status_code == 200, r.text
        lic = r.json()
        return Session(
            token=body["token"],
            lease=lic["lease"],
            device=lic["device_binding"]["fingerprint"],
            user_id=body["user"]["id"],
            fingerprint=fp,
        )


@dataclass(frozen=True)
class Session:
    token: str
    lease: str
    device: str
    user_id: str
    fingerprint: str


@contextmanager
def running_backend(data_dir: Path, **overrides: Any) -> Iterator[AgentBackend]:
    """Start the real app on an ephemeral loopback port with an SQLite file in ``data_dir``.

    ``overrides`` are further ``Settings`` fields (e.g. ``default_plan``).
    """
    fields: dict[str, Any] = {
        "data_dir": data_dir,
        "database_url": f"sqlite:///{data_dir / 'tgflow.db'}",
        "rate_limit_enabled": False,
        "sweep_interval_seconds": 3600,
    }
    settings = Settings(**(fields | overrides))
    clock = ServerClock()
    services = build_services(settings, clock)
    server = LiveServer(create_app(settings, services=services)).__enter__()
    client = httpx.Client(base_url=server.url, timeout=30)
    backend = AgentBackend(server.url, client, clock, services, server)
    try:
        yield backend
    finally:
        client.close()
        backend.stop()
        services.ctx.engine.dispose()


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[AgentBackend]:
    with running_backend(tmp_path / "server") as running:
        yield running


def closed_port_url() -> str:
    """A loopback URL nothing listens on (connections are refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@dataclass
class RequestCounter:
    """An httpx event hook that records every request URL a client sends."""

    urls: list[str] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> None:
        self.urls.append(str(request.url))

    async def hook(self, request: httpx.Request) -> None:
        """The same, for an ``httpx.AsyncClient``."""
        self(request)

    def count(self, path: str) -> int:
        """How many requests went to a URL ending with ``path``."""
        return sum(1 for url in self.urls if url.endswith(path))


@pytest.fixture
def counting_client() -> Iterator[tuple[httpx.Client, RequestCounter]]:
    counter = RequestCounter()
    with httpx.Client(timeout=10, event_hooks={"request": [counter]}) as client:
        yield client, counter


@dataclass
class HitRecorder:
    """A tiny local HTTP server that answers everything and records each path requested."""

    url: str
    hits: list[str]


class _RecordingHandler(BaseHTTPRequestHandler):
    hits: list[str]
    body: bytes

    def do_GET(self) -> None:
        self.hits.append(self.path)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, format: str, *args: Any) -> None:
        return None


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
