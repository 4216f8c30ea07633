"""The Logs panel's data: the session logs on disk (current and past) and their HTML."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from PyQt6.QtCore import QObject, pyqtSignal

from app.catalog import decode_params
from app.engine import Engine
from app.i18n import N_, Translator

from .base import EngineBound
from .telegram_text import stop_reason_text

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


_TITLE: Final = re.compile(r"<(title|h1)>TGFlow session ([^<]*)</\1>")
_HEADER: Final = re.compile(r"<thead>.*?</thead>", re.S)
_LEVEL: Final = re.compile(r'<td class="level">(\w+)</td>')
_STORY: Final = re.compile(r'<td class="message" data-key="([^"]*)" data-params="([^"]*)">')
_STORY_CELL: Final = re.compile(
    r'(<td class="message" data-key="[^"]*" data-params="[^"]*">)[^<]*(</td>)'
)
_ENDED: Final = re.compile(r"<p>Session ended ([^<]*)\.</p>")
_TITLE_KEY: Final = N_("logs.view.title")
_ENDED_KEY: Final = N_("logs.view.ended")
#: Level names the session log writes, and their translation keys.
LEVEL_KEYS: Final = {
    "DEBUG": N_("logs.level.debug"),
    "INFO": N_("logs.level.info"),
    "WARNING": N_("logs.level.warning"),
    "ERROR": N_("logs.level.error"),
    "CRITICAL": N_("logs.level.critical"),
}


def localize_log(text: str, tr: Translator) -> str:
    """A session log's HTML in the window's language.

    The file is written in English (it is also read in a browser, and by support); its headings,
    level names and story lines (cells with a ``data-key``, see ``app.catalog.story``) are put
    into the window's language here. Diagnostics without a key are shown as they were written.
    """

    def title(match: re.Match[str]) -> str:
        when = html.unescape(match[2])
        return f"<{match[1]}>{html.escape(tr.tr(_TITLE_KEY, when=when))}</{match[1]}>"

    def header(_match: re.Match[str]) -> str:
        cells = "".join(
            f"<th>{html.escape(tr.tr(key))}</th>"
            for key in (
                N_("logs.view.time"),
                N_("logs.view.level"),
                N_("logs.view.area"),
                N_("logs.view.message"),
            )
        )
        return f"<thead><tr>{cells}</tr></thead>"

    def level(match: re.Match[str]) -> str:
        key = LEVEL_KEYS.get(match[1])
        shown = tr.tr(key) if key is not None else match[1]
        return f'<td class="level">{html.escape(shown)}</td>'

    def story(match: re.Match[str]) -> str:
        opening = match[1]
        keyed = _STORY.match(opening)
        assert keyed is not None
        key = html.unescape(keyed[1])
        params = decode_params(html.unescape(keyed[2]))
        known = tr.keys()
        if key not in known or params is None:
            return match[0]
        # A stopped broadcast's reason is the worker's English detail (see telegram_text).
        if isinstance(params.get("reason"), str):
            params["reason"] = stop_reason_text(str(params["reason"]), tr)
        return opening + html.escape(tr.tr(key, **params)) + match[2]

    def ended(match: re.Match[str]) -> str:
        when = html.unescape(match[1])
        return f"<p>{html.escape(tr.tr(_ENDED_KEY, when=when))}</p>"

    text = _TITLE.sub(title, text)
    text = _HEADER.sub(header, text, count=1)
    text = _LEVEL.sub(level, text)
    text = _STORY_CELL.sub(story, text)
    return _ENDED.sub(ended, text)


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
