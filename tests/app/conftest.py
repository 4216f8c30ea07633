"""Desktop fixtures: a live reference backend with a demo user, the engine thread, and a Core
built on the engine loop with the simulated Telegram transport and a fake clock."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from app.clock import FakeAsyncClock
from app.demo import DemoBackend, start_demo_backend
from app.engine import Engine
from app.transports.simulated import SimulatedNetwork
from tests.helpers.api import fingerprint
from tests.helpers.desktop import Desktop
from tests.helpers.kurigram_transport import (  # the kurigram transport tests' fixtures
    client_inits,  # noqa: F401
    clock,  # noqa: F401
    factory,  # noqa: F401
    session_dir,  # noqa: F401
    wire,  # noqa: F401
)


@pytest.fixture
def demo_backend(tmp_path: Path) -> Iterator[DemoBackend]:
    backend = start_demo_backend(
        tmp_path / "server", monthly_quota=1000, max_devices=3, rate_limit_enabled=False
    )
    try:
        yield backend
    finally:
        backend.stop()


@pytest.fixture
def engine(qapp: Any) -> Iterator[Engine]:
    eng = Engine()
    try:
        yield eng
    finally:
        eng.stop()


@pytest.fixture
def fake_clock() -> FakeAsyncClock:
    # Starts at the real time: the backend (real clock) signs the tokens the agent checks.
    return FakeAsyncClock(datetime.now(UTC))


@pytest.fixture
def network(fake_clock: FakeAsyncClock) -> SimulatedNetwork:
    return SimulatedNetwork(seed=7, clock=fake_clock)


@pytest.fixture
def desktop(
    demo_backend: DemoBackend,
    engine: Engine,
    fake_clock: FakeAsyncClock,
    network: SimulatedNetwork,
    tmp_path: Path,
) -> Iterator[Desktop]:
    d = Desktop(
        backend=demo_backend,
        engine=engine,
        clock=fake_clock,
        network=network,
        data_dir=tmp_path / "desktop",
        fingerprint=fingerprint(),
    )
    d.make_core()
    try:
        yield d
    finally:
        d.close_core()
