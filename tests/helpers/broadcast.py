"""Driving a broadcast through the Core: the recipients, an observer that records, start and run."""

from __future__ import annotations

from app.broadcast import Progress
from tests.helpers.broadcast_recorder import Recorder
from tests.helpers.desktop import Desktop

__all__ = ["RECIPIENTS", "Recorder", "run", "start"]

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
