"""Driving a broadcast through the Core: the recipients, an observer that records, start and run."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field

import pytest

from app.broadcast import Progress
from tests.helpers.broadcast_recorder import Recorder
from tests.helpers.desktop import Desktop

__all__ = ["RECIPIENTS", "Held", "Recorder", "hold_after", "run", "start"]

RECIPIENTS = [f"@opted_in_{i:04d}" for i in range(200)]


def start(desktop: Desktop, recipients: list[str] = RECIPIENTS) -> tuple[str, str]:
    desktop.sign_in()
    account = desktop.add_account()
    core = desktop.core
    assert core is not None
    broadcast_id = desktop.call(
        lambda: core.create_broadcast(account.account_id, "Hello from TGFlow", recipients)
    )
    return account.account_id, broadcast_id


def run(desktop: Desktop, broadcast_id: str, recorder: Recorder) -> Progress:
    core = desktop.core
    assert core is not None
    return desktop.run(core.run_broadcast(broadcast_id, recorder))


@dataclass
class Held:
    """A send held on the engine: :attr:`held` is set once it waits; set :attr:`gate` (on the
    engine's loop) to let it go."""

    gate: asyncio.Event = field(default_factory=asyncio.Event)
    held: threading.Event = field(default_factory=threading.Event)


def hold_after(desktop: Desktop, monkeypatch: pytest.MonkeyPatch, count: int) -> Held:
    """Make the simulated network's next send after ``count`` sent messages wait (on the
    engine) until the test lets it go: a broadcast caught mid-run, with no sleeps."""
    network = desktop.network
    send = network.send
    hold = Held()

    async def held_send(account_id: str, recipient: str, text: str) -> None:
        if len(network.sent) == count and not hold.gate.is_set():
            hold.held.set()
            await hold.gate.wait()
        await send(account_id, recipient, text)

    monkeypatch.setattr(network, "send", held_send)
    return hold
