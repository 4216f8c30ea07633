"""The HTML log of one program session (DESIGN.md: "Each session writes an HTML log").

Every session gets ``session-YYYYmmdd-HHMMSS.html`` (UTC) in the log directory. The file is
written as the session goes: the header once, then a table row per entry, flushed at once, and the
closing tags at :meth:`SessionLog.close`. Browsers render a table whose closing tags are missing,
so the log of a session that crashed still opens. Every string from a caller is escaped: no entry
can put markup or script into the page.
"""

from __future__ import annotations

import contextlib
import html
import logging
import re
import threading
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Final, TextIO

from agent.clock import Clock
from app.catalog import STORY_ATTRIBUTE, Reason, encode_params

#: Old session logs kept beside the current one; older ones are deleted when a session starts.
DEFAULT_KEEP: Final = 50
#: The loggers whose records :class:`SessionLogHandler` writes: ``tgflow`` and its children.
LOGGER_PREFIX: Final = "tgflow"
#: ``tgflow`` loggers left out: the embedded demo server's access log (its lines carry the
#: method, route and status as extra fields the session log does not show, so each read as a
#: bare "request"), while the desktop already writes its own access line per request
#: (``tgflow.access``).
EXCLUDED_LOGGERS: Final = frozenset({"tgflow.server.access"})

_NAME_FORMAT: Final = "session-%Y%m%d-%H%M%S"
_NAME_PATTERN: Final = re.compile(r"session-(\d{8}-\d{6})(?:-(\d+))?\.html")
_LEVELS: Final = frozenset({"debug", "info", "warning", "error", "critical"})
# C0/C1 controls other than tab and newline are not allowed in HTML text.
_CONTROL: Final = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")

_STYLE: Final = """\
body { font: 13px system-ui, sans-serif; margin: 1em; color: #222; }
table { border-collapse: collapse; width: 100%; }
th, td { border-bottom: 1px solid #ddd; padding: 2px 6px; text-align: left; vertical-align: top; }
td.message { white-space: pre-wrap; word-break: break-word; }
td.time, td.level { white-space: nowrap; font-family: monospace; }
tr.warning td.level { color: #a60; }
tr.error td.level, tr.critical td.level { color: #c00; font-weight: bold; }
tr.debug { color: #777; }
"""


def _text(value: object) -> str:
    """``value`` as escaped HTML text: markup-free, quotes escaped, controls replaced."""
    return html.escape(_CONTROL.sub("\ufffd", str(value)), quote=True)


def _session_sort_key(path: Path) -> tuple[str, int]:
    match = _NAME_PATTERN.fullmatch(path.name)
    assert match is not None
    return match[1], int(match[2] or 1)


def list_session_logs(log_dir: Path) -> list[Path]:
    """The session logs in ``log_dir``, newest first; other files are ignored."""
    try:
        entries = list(log_dir.iterdir())
    except OSError:
        return []
    logs = [path for path in entries if _NAME_PATTERN.fullmatch(path.name) and path.is_file()]
    return sorted(logs, key=_session_sort_key, reverse=True)


def prune_session_logs(log_dir: Path, keep: int, *, current: Path | None = None) -> list[Path]:
    """Delete all but the ``keep`` newest session logs other than ``current``; return the deleted.

    A log that cannot be deleted (open elsewhere on Windows) is left for the next session.
    """
    old = [path for path in list_session_logs(log_dir) if path != current]
    deleted = []
    for path in old[max(keep, 0) :]:
        with contextlib.suppress(OSError):
            path.unlink()
            deleted.append(path)
    return deleted


class SessionLog:
    """The HTML log file of the running session.

    ``clock`` dates the file name and the entries; ``session_name`` (for example ``"demo"``) is
    shown in the page's title. Opening prunes old logs down to ``keep``. Thread-safe; writing
    after :meth:`close` does nothing.
    """

    def __init__(
        self,
        log_dir: Path,
        *,
        clock: Clock,
        session_name: str | None = None,
        keep: int = DEFAULT_KEEP,
    ) -> None:
        """Create the log file in ``log_dir`` (created if missing) and write its header."""
        self._clock = clock
        self._lock = threading.Lock()
        started = clock.now().astimezone(UTC)
        log_dir.mkdir(parents=True, exist_ok=True)
        self.path, self._file = self._create(log_dir, started.strftime(_NAME_FORMAT))
        title = "TGFlow session " + started.strftime("%Y-%m-%d %H:%M:%S UTC")
        if session_name:
            title += f" ({session_name})"
        self._file.write(
            "<!DOCTYPE html>\n"
            '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f"<title>{_text(title)}</title>\n<style>\n{_STYLE}</style>\n</head>\n<body>\n"
            f"<h1>{_text(title)}</h1>\n<table>\n"
            "<thead><tr><th>Time (UTC)</th><th>Level</th><th>Area</th><th>Message</th></tr>"
            "</thead>\n<tbody>\n"
        )
        self._file.flush()
        prune_session_logs(log_dir, keep, current=self.path)

    @staticmethod
    def _create(log_dir: Path, stem: str) -> tuple[Path, TextIO]:
        # Two sessions started in the same second get -2, -3, ...: never one file for both.
        for counter in range(1, 1000):
            path = log_dir / (f"{stem}.html" if counter == 1 else f"{stem}-{counter}.html")
            try:
                handle = path.open("x", encoding="utf-8", errors="replace", newline="\n")
            except FileExistsError:
                continue
            return path, handle
        raise FileExistsError(f"too many session logs named {stem}*.html in {log_dir}")

    @property
    def closed(self) -> bool:
        """``True`` once :meth:`close` has run."""
        return self._file.closed

    def write(
        self,
        level: str,
        area: str,
        message: str,
        *,
        when: datetime | None = None,
        why: Reason | None = None,
    ) -> None:
        """Append an entry (escaped) and flush it to the file; ``when`` defaults to the clock.

        ``why`` is the message as a translation key and its fields (a story line): kept in the
        cell's ``data-key`` and ``data-params`` so that the Logs panel can show it in any
        language; the cell's text stays the English ``message`` for a browser.
        """
        stamp = (when or self._clock.now()).astimezone(UTC)
        level_class = level.lower() if level.lower() in _LEVELS else "other"
        time = f"{stamp:%Y-%m-%d %H:%M:%S}.{stamp.microsecond // 1000:03d}"
        keyed = ""
        if why is not None:
            params = encode_params(why.params)
            keyed = f' data-key="{_text(why.key)}" data-params="{_text(params)}"'
        row = (
            f'<tr class="{level_class}"><td class="time">{time}</td>'
            f'<td class="level">{_text(level)}</td><td class="area">{_text(area)}</td>'
            f'<td class="message"{keyed}>{_text(message)}</td></tr>\n'
        )
        with self._lock:
            if self._file.closed:
                return
            self._file.write(row)
            self._file.flush()

    def close(self) -> None:
        """Write the closing tags and close the file (again: nothing happens)."""
        with self._lock:
            if self._file.closed:
                return
            try:
                ended = self._clock.now().astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
                self._file.write(
                    f"</tbody>\n</table>\n<p>Session ended {ended}.</p>\n</body>\n</html>\n"
                )
            finally:
                self._file.close()

    def __enter__(self) -> SessionLog:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class SessionLogHandler(logging.Handler):
    """Writes the records of the ``tgflow`` loggers into a :class:`SessionLog`.

    Only the record's message is written, with the exception's class name when there is one:
    never a traceback, whose frames could show local values.
    """

    def __init__(self, session_log: SessionLog, level: int = logging.INFO) -> None:
        """Write records at ``level`` and above into ``session_log``."""
        super().__init__(level)
        self.session_log = session_log

    def emit(self, record: logging.LogRecord) -> None:
        """Write ``record`` when it comes from a ``tgflow`` logger."""
        if record.name != LOGGER_PREFIX and not record.name.startswith(LOGGER_PREFIX + "."):
            return
        if record.name in EXCLUDED_LOGGERS:
            return
        try:
            message = record.getMessage()
            if record.exc_info and record.exc_info[0] is not None:
                message += f" [{record.exc_info[0].__name__}]"
            when = datetime.fromtimestamp(record.created, UTC)
            why = getattr(record, STORY_ATTRIBUTE, None)
            self.session_log.write(
                record.levelname,
                record.name,
                message,
                when=when,
                why=why if isinstance(why, Reason) else None,
            )
        except Exception:
            self.handleError(record)
