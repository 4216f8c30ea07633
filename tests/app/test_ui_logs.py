"""The Logs panel: the session logs, newest first, the current one marked, shown as HTML."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from pytestqt.qtbot import QtBot

from agent.clock import FakeClock
from app.engine import Engine
from app.htmllog import SessionLog
from app.i18n import Translator
from app.ui.logs_panel import LogsPanel
from app.viewmodels.logs import LogsViewModel, read_log


def test_the_current_and_past_logs_are_listed_and_shown(
    qtbot: QtBot, engine: Engine, tmp_path: Path
) -> None:
    log_dir = tmp_path / "logs"
    with SessionLog(log_dir, clock=FakeClock(datetime.now(UTC) - timedelta(days=1))) as old:
        old.write("INFO", "tgflow.core", "yesterday's broadcast finished")
    current = SessionLog(log_dir, clock=FakeClock(datetime.now(UTC)))
    current.write("WARNING", "tgflow.broadcast", "FloodWait: waited 42 s <b>not bold</b>")
    try:
        model = LogsViewModel(engine, Translator("ru"), log_dir, current=current.path)
        panel = LogsPanel(model, model.translator)
        model.setParent(panel)
        qtbot.addWidget(panel)
        with qtbot.wait_signal(model.log_loaded) as loaded:
            panel.refresh()
        assert panel.list.count() == 2
        first, second = panel.list.item(0), panel.list.item(1)
        assert first is not None and second is not None
        assert first.text().endswith("текущая сессия")
        assert not second.text().endswith("текущая сессия")
        assert loaded.args[0].path == current.path
        shown = panel.browser.toPlainText()
        assert "FloodWait: waited 42 s <b>not bold</b>" in shown  # escaped, shown as text
        assert panel.title.text() == current.path.name

        with qtbot.wait_signal(model.log_loaded) as loaded:
            panel.list.setCurrentRow(1)
        assert "yesterday's broadcast finished" in panel.browser.toPlainText()
    finally:
        current.close()


def test_a_long_log_keeps_its_header_and_newest_rows(tmp_path: Path) -> None:
    log = SessionLog(tmp_path, clock=FakeClock(datetime.now(UTC)))
    for i in range(3000):
        log.write("INFO", "tgflow.broadcast", f"message number {i:05d}")
    log.close()
    shown = read_log(log.path, limit=20_000)
    assert shown.truncated
    assert shown.html.startswith("<!DOCTYPE html>")
    assert "message number 02999" in shown.html
    assert "message number 00000" not in shown.html
    assert len(shown.html) < 30_000
