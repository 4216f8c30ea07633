"""Shared fixtures of the kurigram transport tests (tests/app/test_pyrogram_*.py): the factory
on a fake clock, a spy on the Clients it builds, kurigram with only the wire faked, and signing in
through the real login flow. tests/app/conftest.py offers the fixtures to every desktop test."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import pyrogram
import pytest

from app.clock import FakeAsyncClock
from app.transports.base import AccountInfo
from app.transports.pyrogram_transport import PyrogramTransportFactory
from tests.helpers.kurigram_wire import LOGIN_CODE, Wire, install

_T = TypeVar("_T")
ACCOUNT = AccountInfo("15550000001", "Alice Liddell", "telegram")


def run(coro: Coroutine[Any, Any, _T]) -> _T:
    return asyncio.run(coro)


@pytest.fixture
def session_dir(tmp_path: Path) -> Path:
    return tmp_path / "sessions"


@pytest.fixture
def clock() -> FakeAsyncClock:
    return FakeAsyncClock(datetime(2026, 3, 1, 10, 0, tzinfo=UTC))


@pytest.fixture
def factory(session_dir: Path, clock: FakeAsyncClock) -> PyrogramTransportFactory:
    return PyrogramTransportFactory(12345, "0123456789abcdef", session_dir, clock=clock)


@pytest.fixture
def client_inits(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names of the pyrogram Clients built during the test."""
    built: list[str] = []
    original = pyrogram.Client.__init__

    def spy(self: pyrogram.Client, name: str, *args: Any, **kwargs: Any) -> None:
        built.append(name)
        original(self, name, *args, **kwargs)

    monkeypatch.setattr(pyrogram.Client, "__init__", spy)
    return built


@pytest.fixture
def wire(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Wire:
    monkeypatch.chdir(tmp_path)  # kurigram logs unknown errors to ./unknown_errors.txt
    telegram = Wire()
    install(monkeypatch, telegram)
    return telegram


def sign_in(factory: PyrogramTransportFactory, phone: str = "+1 555 000-0001") -> AccountInfo:
    """Add the account through the real login flow (a real session file results)."""
    flow = factory.login_flow()

    async def scenario() -> AccountInfo:
        await flow.send_code(phone)
        return await flow.sign_in(LOGIN_CODE)

    return run(scenario())
