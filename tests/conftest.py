"""Shared fixtures: a real backend (SQLite file or PostgreSQL database) behind a real server."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from server_stub.app import create_app
from server_stub.clock import FakeClock
from server_stub.config import Settings
from server_stub.wiring import Services, build_services
from tests.helpers.backend import Backend, BackendFactory
from tests.helpers.billing_shop import Shop, open_shop
from tests.helpers.databases import postgres_database
from tests.helpers.live_server import LiveServer

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'tgflow.db'}"
    else:
        with postgres_database() as url:
            yield url


@pytest.fixture
def make_backend(database_url: str, tmp_path: Path) -> Iterator[BackendFactory]:
    """Start backends on the test's database; ``overrides`` become Settings fields."""
    stack: list[tuple[LiveServer, httpx.Client, Services]] = []

    def start(**overrides: object) -> Backend:
        values: dict[str, object] = {
            "data_dir": tmp_path / "data",
            "database_url": database_url,
            "rate_limit_enabled": False,
            "sweep_interval_seconds": 3600,
        }
        values.update(overrides)
        settings = Settings(**values)  # type: ignore[arg-type]
        clock = FakeClock()
        services = build_services(settings, clock)
        server = LiveServer(create_app(settings, services=services)).__enter__()
        client = httpx.Client(base_url=server.url, timeout=30)
        stack.append((server, client, services))
        return Backend(server.url, client, clock, settings, services, database_url)

    yield start
    for server, client, services in reversed(stack):
        client.close()
        server.__exit__(None, None, None)
        services.ctx.engine.dispose()


@pytest.fixture
def backend(make_backend: BackendFactory) -> Backend:
    return make_backend()


@pytest.fixture
def cli_env(backend: Backend, monkeypatch: pytest.MonkeyPatch) -> Backend:
    """The backend, with ``tgflow-server`` commands pointed at its database."""
    monkeypatch.setenv("TGFLOW_DATABASE_URL", backend.database_url)
    monkeypatch.setenv("TGFLOW_LOG_LEVEL", "WARNING")
    return backend


@pytest.fixture
def shop(database_url: str, tmp_path: Path) -> Iterator[Shop]:
    """Billing over real HTTP with the fake providers (tests/helpers/billing_shop.py)."""
    with open_shop(database_url, tmp_path) as shop:
        yield shop
