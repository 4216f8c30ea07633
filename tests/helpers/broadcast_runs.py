"""Creating and running broadcasts on a test Desktop, and the checks every error case shares."""

from __future__ import annotations

from app.antispam import AccountState, FloodPolicy
from app.broadcast import Pacing, Progress
from app.broadcast_store import BroadcastState
from app.core import Core
from tests.helpers.broadcast_recorder import Recorder
from tests.helpers.desktop import Desktop, quota_used

RECIPIENTS = [f"@reader_{i:03d}" for i in range(12)]
PACING = Pacing(min_delay_sec=2, max_delay_sec=2, batch_size=5)
POLICY = FloodPolicy(max_consecutive_errors=3, cooldown_sec=300)


def core_of(desktop: Desktop) -> Core:
    assert desktop.core is not None
    return desktop.core


def create(desktop: Desktop, account_id: str, text: str = "Hello from TGFlow") -> str:
    core = core_of(desktop)
    return desktop.call(lambda: core.create_broadcast(account_id, text, RECIPIENTS))


def run(desktop: Desktop, broadcast_id: str, recorder: Recorder | None = None) -> Progress:
    core = core_of(desktop)
    return desktop.run(core.run_broadcast(broadcast_id, recorder or Recorder()))


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
