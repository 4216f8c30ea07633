"""Driving a broadcast through the Core: the recipients, an observer that records, start and run."""

from __future__ import annotations

from dataclasses import dataclass, field

from app.broadcast import Progress
from app.broadcast_store import RecipientState
from tests.helpers.desktop import Desktop

RECIPIENTS = [f"@opted_in_{i:04d}" for i in range(200)]


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
