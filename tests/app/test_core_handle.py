"""DeferredCore: the window's stand-in for the core while the core is built."""

from __future__ import annotations

import threading
from typing import Any, cast

import pytest

from app.clock import FakeAsyncClock
from app.core import Core
from app.core_config import CoreConfig
from app.core_handle import CoreNotReady, DeferredCore
from app.transports.simulated import SimulatedNetwork, SimulatedTransportFactory


class FakeCore:
    def __init__(self) -> None:
        self.subscribed: list[Any] = []
        self.greeting = "hello"

    def subscribe_accounts(self, callback: Any) -> None:
        self.subscribed.append(callback)

    def unsubscribe_accounts(self, callback: Any) -> None:
        self.subscribed.remove(callback)


def handle(*, engine_thread: bool = False) -> DeferredCore:
    clock = FakeAsyncClock()
    return DeferredCore(
        CoreConfig(api_base_url="http://127.0.0.1:1", pins=()),
        clock,
        SimulatedTransportFactory(SimulatedNetwork(clock=clock)),
        in_engine_thread=lambda: engine_thread,
    )


def test_config_clock_and_transports_are_there_before_the_core() -> None:
    h = handle()
    assert h.config.api_base_url == "http://127.0.0.1:1"
    assert h.transports.kind == "simulated"
    assert not h.ready
    with pytest.raises(CoreNotReady):
        h.wait(0)


def test_the_engine_thread_is_told_rather_than_left_waiting_for_itself() -> None:
    h = handle(engine_thread=True)
    with pytest.raises(CoreNotReady, match="greeting"):
        _ = h.greeting


def test_the_gui_gets_the_core_once_it_is_attached() -> None:
    h = handle()
    core = FakeCore()
    builder = threading.Thread(target=lambda: h.attach(cast(Core, core)))
    builder.start()
    assert h.greeting == "hello"  # waits for the build if it has not finished
    builder.join()
    assert h.ready and h.wait(0) is cast(Core, core)


def test_subscriptions_made_before_the_core_reach_it() -> None:
    h = handle()
    first, second = object(), object()
    h.subscribe_accounts(first)  # type: ignore[arg-type]
    h.subscribe_accounts(second)  # type: ignore[arg-type]
    h.unsubscribe_accounts(second)  # type: ignore[arg-type]
    core = FakeCore()
    h.attach(cast(Core, core))
    assert core.subscribed == [first]
    h.subscribe_accounts(second)  # type: ignore[arg-type]
    assert core.subscribed == [first, second]
