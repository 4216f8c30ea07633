"""What a desktop test drives: the backend, the engine thread and a Core.

The fixtures that build it are in tests/app/conftest.py.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import keyring.backends.fail

from agent.secrets import RefreshTokenStore
from app.antispam import FloodPolicy
from app.broadcast import Pacing
from app.clock import FakeAsyncClock
from app.core import Core, CoreConfig
from app.demo import DemoBackend
from app.engine import Engine
from app.transports.base import AccountInfo, TransportFactory
from app.transports.simulated import SimulatedNetwork, SimulatedTransportFactory

_T = TypeVar("_T")


class ManualTimer:
    """The heartbeats' timer of a test: each wait lasts until :meth:`fire` (from any thread)."""

    def __init__(self) -> None:
        #: Every wait asked for, in seconds (the server's ``next_heartbeat_s``).
        self.waits: list[float] = []
        self._pending: tuple[asyncio.AbstractEventLoop, asyncio.Event] | None = None

    @property
    def pending(self) -> bool:
        """Whether a heartbeat waits for :meth:`fire`."""
        return self._pending is not None

    async def wait(self, seconds: float) -> None:
        self.waits.append(seconds)
        event = asyncio.Event()
        pending = (asyncio.get_running_loop(), event)
        self._pending = pending
        try:
            await event.wait()
        finally:
            if self._pending is pending:
                self._pending = None

    def fire(self) -> None:
        """End the pending wait: the next heartbeat goes now (:attr:`pending` is false from
        here until the next wait begins)."""
        assert self._pending is not None, "no heartbeat is waiting"
        (loop, event), self._pending = self._pending, None
        loop.call_soon_threadsafe(event.set)


#: Long enough for anything the engine does in a test; a hang fails instead of blocking CI.
ENGINE_TIMEOUT = 60.0


@dataclass
class Desktop:
    """What a desktop test drives: the backend, the engine and a Core on it."""

    backend: DemoBackend
    engine: Engine
    clock: FakeAsyncClock
    network: SimulatedNetwork
    data_dir: Path
    fingerprint: str
    core: Core | None = None
    timer: ManualTimer = field(default_factory=ManualTimer)

    def run(self, coro: Coroutine[Any, Any, _T]) -> _T:
        """Run a coroutine on the engine loop and wait for its result (test thread only)."""
        return self.engine.submit(coro).result(ENGINE_TIMEOUT)

    def call(self, fn: Callable[[], _T]) -> _T:
        """Run a plain function on the engine loop and wait for its result."""

        async def wrapper() -> _T:
            return fn()

        return self.run(wrapper())

    def make_core(
        self,
        *,
        policy: FloodPolicy | None = None,
        pacing: Pacing | None = None,
        telemetry: bool = False,
        pins: tuple[str, ...] | None = None,
        transports: TransportFactory | None = None,
        install_domain: str = "pc1.corp.example.com",
    ) -> Core:
        """Build (or rebuild, after a simulated restart) the Core on the engine loop."""
        config = CoreConfig(
            api_base_url=self.backend.url,
            pins=self.backend.pins if pins is None else pins,
            policy=policy or FloodPolicy(max_consecutive_errors=3, cooldown_sec=300),
            pacing=pacing or Pacing(min_delay_sec=3, max_delay_sec=7, batch_size=50),
            telemetry=telemetry,
            install_domain=install_domain,
            store_checkout_url=self.backend.store_checkout_url,
        )

        async def build() -> Core:
            return Core(
                config,
                data_dir=self.data_dir,
                transports=transports or SimulatedTransportFactory(self.network),
                fingerprint=self.fingerprint,
                clock=self.clock,
                secrets=RefreshTokenStore(self.data_dir, backend=keyring.backends.fail.Keyring()),
                rng=random.Random(3),
                device_name="test desktop",
                heartbeat_timer=self.timer,
            )

        self.core = self.run(build())
        return self.core

    def close_core(self) -> None:
        if self.core is not None:
            core, self.core = self.core, None
            self.run(core.close())

    def add_account(self, phone: str = "+15550000001") -> AccountInfo:
        """Add a simulated Telegram account through the login flow."""
        core = self._core()
        self.run(core.add_account_start(phone))
        return self.run(core.add_account_code("12345")).info

    def sign_in(self) -> None:
        core = self._core()
        self.run(core.sign_in(self.backend.email, self.backend.password))

    def _core(self) -> Core:
        assert self.core is not None, "make_core() first"
        return self.core


def quota_used(
    backend: DemoBackend, email: str | None = None, password: str | None = None
) -> tuple[int, int]:
    """``(used, held)`` of the demo user's current period, straight from the server."""
    import httpx

    with httpx.Client(base_url=backend.url) as client:
        r = client.post(
            "/auth/login",
            json={
                "email": email or backend.email,
                "password": password or backend.password,
                "device_fingerprint": "fp-quota-probe-0123456789",
            },
        )
        assert r.status_code == 200, r.text
        token = r.json()["token"]
        lic = client.get("/license", headers={"Authorization": f"Bearer {token}"})
        assert lic.status_code == 200, lic.text
        quota = lic.json()["quota"]
        return int(quota["used"]), int(quota["held"])


def drain(loop_coro: Coroutine[Any, Any, _T]) -> _T:
    """Run a coroutine to completion in a fresh loop (for Qt-free unit tests)."""
    return asyncio.run(loop_coro)
