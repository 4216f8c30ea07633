"""Driving broadcasts through the Core in tests: an observer that records, creating, starting and
running a broadcast, and the checks every error case shares."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field

import pytest

from app.antispam import AccountState, FloodPolicy
from app.broadcast import Pacing, Progress
from app.broadcast_store import BroadcastState, RecipientState
from app.core import Core
from tests.helpers.desktop import Desktop, quota_used

#: Many opted-in recipients (a long run: pausing, crashing, resuming in the middle).
RECIPIENTS = [f"@opted_in_{i:04d}" for i in range(200)]
#: A few recipients (the error cases: each outcome is easy to count).
READERS = [f"@reader_{i:03d}" for i in range(12)]
PACING = Pacing(min_delay_sec=2, max_delay_sec=2, batch_size=5)
POLICY = FloodPolicy(max_consecutive_errors=3, cooldown_sec=300)


def core_of(desktop: Desktop) -> Core:
    assert desktop.core is not None
    return desktop.core


def create(desktop: Desktop, account_id: str, text: str = "Hello from TGFlow") -> str:
    core = core_of(desktop)
    return desktop.call(lambda: core.create_broadcast(account_id, text, READERS))


def assert_ended_properly(desktop: Desktop, final: Progress, broadcast_id: str) -> None:
    """Quota exact, nothing held, and neither the run nor the store says "running"."""
    core = core_of(desktop)
    stored = desktop.call(lambda: core.broadcast(broadcast_id))
    assert final.state is not BroadcastState.RUNNING
    assert stored.state is not BroadcastState.RUNNING
    assert quota_used(desktop.backend) == (final.counts.sent, 0)
    if final.state is BroadcastState.STOPPED:
        assert final.detail  # a reason to read


def account_status(desktop: Desktop, account_id: str) -> tuple[AccountState, str]:
    core = core_of(desktop)
    status = desktop.call(lambda: core.antispam.status(account_id))
    return status.state, status.reason


def start(desktop: Desktop, recipients: list[str] = RECIPIENTS) -> tuple[str, str]:
    """Sign in, add an account and create a broadcast: (account id, broadcast id)."""
    desktop.sign_in()
    account = desktop.add_account()
    core = core_of(desktop)
    broadcast_id = desktop.call(
        lambda: core.create_broadcast(account.account_id, "Hello from TGFlow", recipients)
    )
    return account.account_id, broadcast_id


def run(desktop: Desktop, broadcast_id: str, recorder: Recorder | None = None) -> Progress:
    core = core_of(desktop)
    return desktop.run(core.run_broadcast(broadcast_id, recorder or Recorder()))


@dataclass
class Recorder:
    """A BroadcastObserver that keeps everything (called on the engine thread)."""

    progress_events: list[Progress] = field(default_factory=list)
    recipients: list[tuple[str, RecipientState, str]] = field(default_factory=list)
    notices: list[tuple[str, str]] = field(default_factory=list)
    on_sent: object = None

    def progress(self, progress: Progress) -> None:
        self.progress_events.append(progress)

    def recipient(
        self, broadcast_id: str, recipient: str, state: RecipientState, detail: str
    ) -> None:
        self.recipients.append((recipient, state, detail))
        if state is RecipientState.SENT and callable(self.on_sent):
            self.on_sent(sum(1 for _r, s, _d in self.recipients if s is RecipientState.SENT))

    def notice(self, broadcast_id: str, kind: str, message: str) -> None:
        self.notices.append((kind, message))


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
