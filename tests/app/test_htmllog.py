"""The per-session HTML log: escaping, crash-readability, listing, pruning, the logging handler."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path

import pytest

from agent.clock import FakeClock
from app.htmllog import SessionLog, SessionLogHandler, list_session_logs, prune_session_logs
from tests.helpers.desktop import Desktop

START = datetime(2026, 3, 1, 9, 30, 5, tzinfo=UTC)


class _Page(HTMLParser):
    """The page as a browser sees it: the elements opened, and the text of each table cell."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.rows: list[list[str]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag == "tr":
            self.rows.append([])
        elif tag == "td":
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._cell is not None:
            self.rows[-1].append("".join(self._cell))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    page.close()
    return page


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
def session(tmp_path: Path, clock: FakeClock) -> Iterator[SessionLog]:
    log = SessionLog(tmp_path / "logs", clock=clock)
    yield log
    log.close()


def test_file_name_and_header(session: SessionLog, tmp_path: Path) -> None:
    assert session.path == tmp_path / "logs" / "session-20260301-093005.html"
    text = session.path.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>")
    assert '<meta charset="utf-8">' in text
    assert "<style>" in text
    assert "TGFlow session 2026-03-01 09:30:05 UTC" in text


def test_session_name_is_escaped_in_the_title(tmp_path: Path, clock: FakeClock) -> None:
    with SessionLog(tmp_path, clock=clock, session_name="<b>demo</b>") as log:
        text = log.path.read_text(encoding="utf-8")
    assert "(&lt;b&gt;demo&lt;/b&gt;)" in text
    assert "<b>" not in text


def test_message_and_area_are_escaped(session: SessionLog) -> None:
    message = "<script>alert(\"x\")</script> & 'quoted' <img src=x onerror=alert(1)>"
    area = 'tgflow.<i>"area"</i>&'
    session.write("WARNING", area, message)
    session.write('"><script>', "a", "b")
    text = session.path.read_text(encoding="utf-8")
    assert "<script>" not in text
    assert "<img" not in text
    assert "<i>" not in text
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#x27;quoted&#x27;" in text
    assert "tgflow.&lt;i&gt;&quot;area&quot;&lt;/i&gt;&amp;" in text
    page = parse(session.path)
    assert "script" not in page.tags and "img" not in page.tags
    rows = [row for row in page.rows if row]
    assert rows[0][1:] == ["WARNING", area, message]
    assert rows[1][1] == '"><script>'
    assert '<tr class="other">' in text  # an unknown level never becomes a class name


def test_control_characters_and_surrogates_do_not_break_the_file(session: SessionLog) -> None:
    session.write("INFO", "a", "nul\x00 bell\x07 tab\t nl\n lone\ud800 end")
    rows = [row for row in parse(session.path).rows if row]
    assert rows[0][3] == "nul\ufffd bell\ufffd tab\t nl\n lone? end"


def test_file_renders_without_close(tmp_path: Path, clock: FakeClock) -> None:
    log = SessionLog(tmp_path, clock=clock)
    try:
        log.write("INFO", "tgflow.app", "first")
        clock.advance(1.5)
        log.write("ERROR", "tgflow.broadcast", "second")
        # As after a crash: the rows are on disk although the footer never was written.
        text = log.path.read_text(encoding="utf-8")
        assert "</html>" not in text
        rows = [row for row in parse(log.path).rows if row]
        assert rows == [
            ["2026-03-01 09:30:05.000", "INFO", "tgflow.app", "first"],
            ["2026-03-01 09:30:06.500", "ERROR", "tgflow.broadcast", "second"],
        ]
    finally:
        log.close()
    assert log.path.read_text(encoding="utf-8").endswith("</html>\n")


def test_close_is_idempotent_and_later_writes_are_dropped(session: SessionLog) -> None:
    session.close()
    session.close()
    before = session.path.read_text(encoding="utf-8")
    session.write("INFO", "a", "after close")
    assert session.closed
    assert session.path.read_text(encoding="utf-8") == before
    assert before.count("</html>") == 1


def test_same_second_sessions_get_distinct_files(tmp_path: Path, clock: FakeClock) -> None:
    with SessionLog(tmp_path, clock=clock) as one, SessionLog(tmp_path, clock=clock) as two:
        assert one.path != two.path
        assert two.path.name == "session-20260301-093005-2.html"


def test_listing_is_newest_first_and_ignores_other_files(tmp_path: Path) -> None:
    names = [
        "session-20260301-093005.html",
        "session-20260301-093005-2.html",
        "session-20260301-093005-10.html",
        "session-20251231-235959.html",
        "session-20260302-000000.html",
    ]
    for name in names:
        (tmp_path / name).write_text("")
    (tmp_path / "notes.html").write_text("")
    (tmp_path / "session-2026.html").write_text("")
    assert [p.name for p in list_session_logs(tmp_path)] == [
        "session-20260302-000000.html",
        "session-20260301-093005-10.html",
        "session-20260301-093005-2.html",
        "session-20260301-093005.html",
        "session-20251231-235959.html",
    ]
    assert list_session_logs(tmp_path / "missing") == []


def test_pruning_keeps_the_newest(tmp_path: Path, clock: FakeClock) -> None:
    for day in range(1, 8):
        (tmp_path / f"session-202601{day:02d}-120000.html").write_text("")
    (tmp_path / "keep-me.txt").write_text("")
    with SessionLog(tmp_path, clock=clock, keep=3) as log:
        assert [p.name for p in list_session_logs(tmp_path)] == [
            log.path.name,
            "session-20260107-120000.html",
            "session-20260106-120000.html",
            "session-20260105-120000.html",
        ]
    assert (tmp_path / "keep-me.txt").exists()
    deleted = prune_session_logs(tmp_path, 1)
    assert [p.name for p in deleted] == [
        "session-20260107-120000.html",
        "session-20260106-120000.html",
        "session-20260105-120000.html",
    ]
    assert list_session_logs(tmp_path) == [log.path]


def test_default_keeps_fifty(tmp_path: Path, clock: FakeClock) -> None:
    for minute in range(55):
        (tmp_path / f"session-20260101-12{minute // 60:02d}{minute % 60:02d}.html").write_text("")
    with SessionLog(tmp_path, clock=clock):
        logs = list_session_logs(tmp_path)
    assert len(logs) == 51
    assert logs[-1].name == "session-20260101-120005.html"


def test_handler_writes_tgflow_records_without_traceback(session: SessionLog) -> None:
    handler = SessionLogHandler(session)
    root = logging.getLogger()
    root.addHandler(handler)
    old_level = root.level
    root.setLevel(logging.DEBUG)
    try:
        logging.getLogger("tgflow.broadcast").info("sent %d of %d <to> %s", 3, 5, "@alice")
        logging.getLogger("tgflow").warning("top level")
        logging.getLogger("tgflow.agent").debug("below the handler's level")
        logging.getLogger("tgflowx").warning("not ours")
        logging.getLogger("httpx").warning("not ours either")
        try:
            raise RuntimeError("token=secret-value")
        except RuntimeError:
            logging.getLogger("tgflow.agent").exception("refresh failed")
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
    text = session.path.read_text(encoding="utf-8")
    rows = [row[1:] for row in parse(session.path).rows if row]
    assert rows == [
        ["INFO", "tgflow.broadcast", "sent 3 of 5 <to> @alice"],
        ["WARNING", "tgflow", "top level"],
        ["ERROR", "tgflow.agent", "refresh failed [RuntimeError]"],
    ]
    assert "secret-value" not in text
    assert "Traceback" not in text


def test_the_embedded_servers_access_lines_stay_out_of_the_session_log(
    session: SessionLog, desktop: Desktop
) -> None:
    handler = SessionLogHandler(session)
    ours = logging.getLogger("tgflow")
    old_level = ours.level
    ours.setLevel(logging.DEBUG)
    ours.addHandler(handler)
    try:
        desktop.sign_in()  # over HTTP to the demo server running in this process
    finally:
        ours.removeHandler(handler)
        ours.setLevel(old_level)
    areas = [row[2] for row in parse(session.path).rows if row]
    # The desktop's own access line (method, route, status) is there; the server's bare
    # "request" lines, one per request, are not.
    assert "tgflow.access" in areas
    assert "tgflow.server.access" not in areas
