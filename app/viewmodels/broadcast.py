"""The Broadcast panel's logic: import recipients, confirm they opted in, send, watch, control.

The worker reports every message on the engine thread. Handing each one to the GUI on its own
would make ten thousand GUI events; instead the observer drops them into a queue and the GUI
drains it on a timer (every :data:`FLUSH_INTERVAL_MS`), emitting one batch per tick: the GUI's
work per tick is bounded by what changed, not by how fast messages go out.
"""

from __future__ import annotations

import collections
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Final

from PyQt6.QtCore import QObject, QTimer, pyqtSignal

from app.engine import Engine
from app.i18n import Translator
from app.transports.base import MAX_MESSAGE_LENGTH, message_length
from app.viewmodels.telegram_text import stop_reason_text

from .base import EngineBound
from .recipient_table import RecipientUpdate
from .suppression import SuppressionViewModel

if TYPE_CHECKING:
    from app.broadcast import Pacing, Progress
    from app.broadcast_store import Broadcast, DeliveryPlan, RecipientState
    from app.core import Core
    from app.recipients import RecipientImport

#: How often the GUI takes the queued progress (milliseconds).
FLUSH_INTERVAL_MS: Final = 80

_SECONDS = re.compile(r"(\d+)\s*s\b")


class _Inbox:
    """Filled on the engine thread, emptied in the GUI thread (deque appends are atomic)."""

    def __init__(self) -> None:
        self.rows: collections.deque[RecipientUpdate] = collections.deque()
        self.progress: Progress | None = None

    def take_rows(self) -> list[RecipientUpdate]:
        rows = []
        while True:
            try:
                rows.append(self.rows.popleft())
            except IndexError:
                return rows


class _Observer:
    """The worker's :class:`~app.broadcast.BroadcastObserver`; runs on the engine thread."""

    def __init__(self, inbox: _Inbox, notice: Callable[[str, str], None]) -> None:
        self._inbox = inbox
        self._notice = notice

    def progress(self, progress: Progress) -> None:
        self._inbox.progress = progress

    def recipient(
        self, broadcast_id: str, recipient: str, state: RecipientState, detail: str
    ) -> None:
        self._inbox.rows.append((recipient, str(state), detail))

    def notice(self, broadcast_id: str, kind: str, message: str) -> None:
        self._notice(kind, message)


@dataclass(frozen=True)
class _Started:
    broadcast_id: str
    #: The broadcast's rows as stored: the table shows this run, not the previous one.
    rows: list[RecipientUpdate]


def _rows(core: Core, broadcast_id: str) -> list[RecipientUpdate]:
    return [(r.recipient, str(r.state), r.detail) for r in core.recipients(broadcast_id)]


class BroadcastSession(EngineBound):
    """One broadcast at a time: the imported list, the opt-in confirmation, the run."""

    imported = pyqtSignal(object)
    import_failed = pyqtSignal(str)
    #: The opt-in confirmation changed (a new import clears it).
    opt_in_changed = pyqtSignal(bool)
    #: The broadcast was created (or an earlier one loaded) and is starting: its id.
    started = pyqtSignal(str)
    #: The rows of an earlier broadcast that is being continued (``list[RecipientUpdate]``).
    rows_loaded = pyqtSignal(list)
    progress = pyqtSignal(object)
    #: Changes since the last tick, as one list of (recipient, state, detail).
    recipients_changed = pyqtSignal(list)
    #: One recipient changed: (recipient, state, detail). Emitted only when connected.
    recipient_changed = pyqtSignal(str, str, str)
    #: (kind, message already in the window's language): ``flood_wait``, ``peer_flood``,
    #: ``stopped``, …
    notice = pyqtSignal(str, str)
    finished = pyqtSignal(object)
    failed = pyqtSignal(str)
    #: Running, paused or idle changed: buttons re-check what they allow.
    state_changed = pyqtSignal()
    #: The stored broadcasts (``list[Broadcast]``), newest first.
    broadcasts_changed = pyqtSignal(list)
    #: Start found recipients who already received this text (a ``DeliveryPlan``): nothing was
    #: started; the user chooses with ``start(..., send_again=False | True)``.
    repeat_found = pyqtSignal(object)

    def __init__(
        self, engine: Engine, core: Core, translator: Translator, parent: QObject | None = None
    ) -> None:
        super().__init__(engine, translator, parent)
        self._core = core
        self._import: RecipientImport | None = None
        self._opted_in = False
        self._running = False
        #: Start is checking who already received the text (a second click waits for it).
        self._checking = False
        self._paused = False
        self._broadcast_id: str | None = None
        self._requested: str | None = None  # pause/stop asked before the id was known
        self._last_progress: Progress | None = None
        self._inbox = _Inbox()
        self._timer = QTimer(self)
        self._timer.setInterval(FLUSH_INTERVAL_MS)
        self._timer.timeout.connect(self.flush)
        self.suppression = SuppressionViewModel(engine, core, translator, self)

    # --- state ----------------------------------------------------------------------------------

    @property
    def pacing(self) -> Pacing:
        return self._core.config.pacing

    @property
    def pacing_is_demo(self) -> bool:
        """The demo's own pacing is used; settings.ini's [broadcast] does not apply."""
        return self._core.config.demo_pacing

    @property
    def recipients(self) -> tuple[str, ...]:
        return () if self._import is None else self._import.recipients

    @property
    def last_import(self) -> RecipientImport | None:
        return self._import

    @property
    def opted_in(self) -> bool:
        return self._opted_in

    @property
    def running(self) -> bool:
        return self._running

    @property
    def paused(self) -> bool:
        return self._paused

    @property
    def broadcast_id(self) -> str | None:
        return self._broadcast_id

    @property
    def last_progress(self) -> Progress | None:
        return self._last_progress

    def now(self) -> datetime:
        return self._core.clock.now()

    def set_opted_in(self, confirmed: bool) -> None:
        """The user confirms (or withdraws) that every imported recipient opted in."""
        if confirmed != self._opted_in:
            self._opted_in = confirmed
            self.opt_in_changed.emit(confirmed)
            self.state_changed.emit()

    # --- import ---------------------------------------------------------------------------------

    def import_text(self, text: str) -> bool:
        """Recipients pasted by the user (parsed on the engine)."""
        from app.recipients import parse_recipients_text

        return self._import_with(lambda: parse_recipients_text(text), "import text")

    def import_file(self, path: Path | str) -> bool:
        """Recipients from a CSV or text file (read on the engine, never in the GUI thread)."""
        from app.recipients import load_recipients_file

        file = Path(path)
        return self._import_with(lambda: load_recipients_file(file), "import file")

    def _import_with(self, parse: Callable[[], RecipientImport], what: str) -> bool:
        if self._running:
            self.import_failed.emit(self._tr.tr("broadcast.error.running"))
            return False
        core = self._core

        def parse_and_suppress() -> RecipientImport:
            from app.broadcast_store import SuppressionReason

            result = parse()
            if result.opted_out:
                # An opt-out is for good, whichever list the person turns up in later.
                core.suppress(list(result.opted_out), SuppressionReason.OPT_OUT)
            return result

        return self.call(parse_and_suppress, self._imported, self.import_failed.emit, what=what)

    def _imported(self, result: RecipientImport) -> None:
        if result.opted_out:
            self.suppression.refresh()
        self._import = result
        self._broadcast_id = None
        self._last_progress = None
        # The confirmation was about the previous list; a new list needs its own.
        self.set_opted_in(False)
        self.imported.emit(result)
        self.state_changed.emit()

    # --- checks ---------------------------------------------------------------------------------

    def text_problem(self, text: str) -> str | None:
        """Why ``text`` cannot be sent, or ``None``."""
        if not text.strip():
            return self._tr.tr("broadcast.error.no_text")
        # Telegram's own measure (UTF-16 code units), so the check agrees with what it refuses.
        length = message_length(text)
        if length > MAX_MESSAGE_LENGTH:
            return self._tr.tr(
                "broadcast.error.text_too_long", length=length, limit=MAX_MESSAGE_LENGTH
            )
        return None

    def start_problem(self, account_id: str | None, text: str) -> str | None:
        """Why :meth:`start` would refuse, or ``None``."""
        if self._running:
            return self._tr.tr("broadcast.error.running")
        if not self.recipients:
            return self._tr.tr("broadcast.error.no_recipients")
        if not self._opted_in:
            return self._tr.tr("broadcast.error.no_opt_in")
        if not account_id:
            return self._tr.tr("broadcast.error.no_account")
        return self.text_problem(text)

    # --- running --------------------------------------------------------------------------------

    def start(self, account_id: str | None, text: str, *, send_again: bool | None = None) -> bool:
        """Create a broadcast of the imported recipients and send it.

        Refused (``failed`` and ``False``) without recipients, without the opt-in confirmation,
        without an account or text, or while another broadcast runs. With ``send_again`` left
        ``None``, recipients who already received this exact text stop the start:
        :attr:`repeat_found` asks the user, who then starts again with ``send_again=False``
        (only the others) or ``True`` (everyone again). Suppressed recipients are never sent to.
        """
        problem = self.start_problem(account_id, text)
        if problem is None and self._checking:
            problem = self._tr.tr("broadcast.error.running")
        if problem is not None:
            self.failed.emit(problem)
            return False
        assert account_id is not None
        recipients = list(self.recipients)
        core = self._core
        if send_again is None:
            self._checking = True

            def checked(plan: DeliveryPlan) -> None:
                self._checking = False
                if plan.already_received:
                    self.repeat_found.emit(plan)
                else:
                    self.start(account_id, text, send_again=False)

            def check_failed(message: str) -> None:
                self._checking = False
                self.failed.emit(message)

            return self.call(
                lambda: core.delivery_plan(text, recipients),
                checked,
                check_failed,
                what="check earlier deliveries",
            )

        def create() -> _Started:
            broadcast_id = core.create_broadcast(
                account_id, text, recipients, send_again=send_again
            )
            return _Started(broadcast_id, _rows(core, broadcast_id))

        return self._run(create, "start broadcast")

    def run_existing(self, broadcast_id: str) -> bool:
        """Continue an earlier broadcast (stopped, or never started): its pending recipients."""
        if self._running:
            self.failed.emit(self._tr.tr("broadcast.error.running"))
            return False
        core = self._core

        def load() -> _Started:
            return _Started(broadcast_id, _rows(core, broadcast_id))

        return self._run(load, "continue broadcast")

    def _run(self, prepare: Callable[[], _Started], what: str) -> bool:
        inbox = _Inbox()
        self._inbox = inbox
        observer = _Observer(inbox, self._engine_notice)
        self._running, self._paused, self._requested = True, False, None
        self._last_progress = None
        self._timer.start()
        self.state_changed.emit()

        async def run() -> Progress:
            started = prepare()
            self.to_gui(lambda: self._started(started))
            return await self._core.run_broadcast(started.broadcast_id, observer)

        ok = self.submit(run(), self._finished, self._run_failed, what=what)
        if not ok:
            self._stopped_running()
        return ok

    def _started(self, started: _Started) -> None:
        self._broadcast_id = started.broadcast_id
        self.rows_loaded.emit(started.rows)
        self.started.emit(started.broadcast_id)
        requested, self._requested = self._requested, None
        if requested == "stop":
            self.stop()
        elif requested == "pause":
            self.pause()

    def pause(self) -> None:
        if not self._running or self._paused:
            return
        self._paused = True
        self._control("pause", lambda core, bid: core.pause_broadcast(bid))
        self.state_changed.emit()

    def resume(self) -> None:
        if not self._running or not self._paused:
            return
        self._paused = False
        self._control("resume", lambda core, bid: core.resume_broadcast(bid))
        self.state_changed.emit()

    def stop(self) -> None:
        if not self._running:
            return
        self._control("stop", lambda core, bid: core.stop_broadcast(bid))

    def _control(self, name: str, action: Callable[[Core, str], None]) -> None:
        broadcast_id = self._broadcast_id
        if broadcast_id is None:
            self._requested = name  # applied as soon as the broadcast exists
            return
        core = self._core
        self._engine.call_soon(lambda: action(core, broadcast_id))

    def flush(self) -> None:
        """Hand what the worker reported since the last tick to the widgets (GUI thread)."""
        rows = self._inbox.take_rows()
        if rows:
            self.recipients_changed.emit(rows)
            if self.receivers(self.recipient_changed) > 0:
                for recipient, state, detail in rows:
                    self.recipient_changed.emit(recipient, state, detail)
        progress = self._inbox.progress
        if progress is not None and progress is not self._last_progress:
            self._last_progress = progress
            self.progress.emit(progress)

    def _finished(self, progress: Progress) -> None:
        self.flush()
        self._inbox.progress = progress
        self.flush()
        self._stopped_running()
        self.finished.emit(progress)
        self.refresh_broadcasts()
        self.suppression.refresh()  # the run may have met recipients who blocked the account

    def _run_failed(self, message: str) -> None:
        self.flush()
        self._stopped_running()
        self.failed.emit(message)
        self.refresh_broadcasts()

    def _stopped_running(self) -> None:
        self._timer.stop()
        self._running, self._paused, self._requested = False, False, None
        self.state_changed.emit()

    # --- notices --------------------------------------------------------------------------------

    def _engine_notice(self, kind: str, message: str) -> None:
        # Engine thread; notices are rare (a FloodWait, a stop), so each goes over at once.
        self.to_gui(lambda: self.notice.emit(kind, self.describe_notice(kind, message)))

    def describe_notice(self, kind: str, message: str) -> str:
        """The worker's notice in the window's language."""
        if kind == "flood_wait":
            match = _SECONDS.search(message)
            if match is not None:
                return self._tr.tr("notice.flood_wait", seconds=int(match[1]))
        elif kind == "peer_flood":
            return self._tr.tr("notice.peer_flood")
        elif kind == "stopped":
            return self._tr.tr("notice.stopped", reason=self.describe_reason(message))
        return message

    def describe_reason(self, detail: str) -> str:
        """Why a broadcast stopped or waits (a worker's English detail), translated."""
        return stop_reason_text(detail, self._tr)

    # --- earlier broadcasts ---------------------------------------------------------------------

    def refresh_broadcasts(self) -> bool:
        return self.call(
            self._core.broadcasts, self.broadcasts_changed.emit, what="list broadcasts"
        )

    @staticmethod
    def resumable(broadcasts: list[Broadcast]) -> list[Broadcast]:
        """The broadcasts that still have recipients to send to."""
        return [b for b in broadcasts if b.counts.pending > 0]

    def report_error(self, message: str) -> None:
        self.failed.emit(message)
