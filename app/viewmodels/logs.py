"""The Logs panel's data: the session logs on disk (current and past) and their HTML."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from PyQt6.QtCore import QObject, pyqtSignal

from app.engine import Engine
from app.i18n import Translator

from .base import EngineBound

#: A log larger than this is shown from its end (the newest entries), its header kept.
MAX_SHOWN_BYTES: Final = 1024 * 1024
_BODY_START: Final = "<tbody>\n"
_STARTED: Final = re.compile(r"session-(\d{8}-\d{6})")


@dataclass(frozen=True)
class LogEntry:
    path: Path
    size: int
    #: When the session started (from the file name), or the file's time.
    started: datetime
    current: bool

    @property
    def name(self) -> str:
        return self.path.name


@dataclass(frozen=True)
class LogText:
    path: Path
    html: str
    #: Older entries were left out (the file is larger than :data:`MAX_SHOWN_BYTES`).
    truncated: bool


def _started(path: Path) -> datetime | None:
    match = _STARTED.match(path.name)
    if match is None:
        return None
    try:
        return datetime.strptime(match[1], "%Y%m%d-%H%M%S").replace(tzinfo=UTC)
    except ValueError:
        return None


def list_logs(log_dir: Path, current: Path | None) -> list[LogEntry]:
    """Every session log in ``log_dir``, newest first (disk: call it on the engine)."""
    from app.htmllog import list_session_logs

    entries = []
    for path in list_session_logs(log_dir):
        try:
            stat = path.stat()
        except OSError:
            continue
        entries.append(
            LogEntry(
                path=path,
                size=stat.st_size,
                started=_started(path) or datetime.fromtimestamp(stat.st_mtime, UTC),
                current=current is not None and path == current,
            )
        )
    return entries


def read_log(path: Path, limit: int = MAX_SHOWN_BYTES) -> LogText:
    """A session log's HTML; a large one keeps its header and its newest rows."""
    with path.open("rb") as fh:
        size = fh.seek(0, 2)
        if size <= limit:
            fh.seek(0)
            return LogText(path, fh.read().decode("utf-8", "replace"), truncated=False)
        fh.seek(0)
        head = fh.read(64 * 1024).decode("utf-8", "replace")
        fh.seek(size - limit)
        tail = fh.read().decode("utf-8", "replace")
    header, found, _rows = head.partition(_BODY_START)
    # Start at a whole row: drop the partial line the cut fell into.
    tail = tail.partition("\n")[2]
    if not found:
        return LogText(path, tail, truncated=True)
    return LogText(path, header + _BODY_START + tail, truncated=True)


class LogsViewModel(EngineBound):
    #: ``list[LogEntry]``, newest first.
    logs_changed = pyqtSignal(list)
    #: The log asked for (``LogText``).
    log_loaded = pyqtSignal(object)
    failed = pyqtSignal(str)

    def __init__(
        self,
        engine: Engine,
        translator: Translator,
        log_dir: Path,
        *,
        current: Path | None = None,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(engine, translator, parent)
        self._log_dir = log_dir
        self._current = current
        self._logs: list[LogEntry] = []

    @property
    def logs(self) -> list[LogEntry]:
        return list(self._logs)

    def refresh(self) -> bool:
        log_dir, current = self._log_dir, self._current
        return self.call(lambda: list_logs(log_dir, current), self._listed, what="list logs")

    def _listed(self, logs: list[LogEntry]) -> None:
        self._logs = logs
        self.logs_changed.emit(list(logs))

    def open(self, path: Path) -> bool:
        return self.call(lambda: read_log(path), self.log_loaded.emit, what="read log")

    def report_error(self, message: str) -> None:
        self.failed.emit(message)
