"""A BroadcastObserver for tests: keeps every event the worker reports."""

from __future__ import annotations

from dataclasses import dataclass, field

from app.broadcast import Progress
from app.broadcast_store import RecipientState


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
