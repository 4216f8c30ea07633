"""The demo's newcomer flow through the real main window: from launch to a finished broadcast of
the 50 demo recipients in four clicks (Sign in, the Broadcast tab, the opt-in tick, Start), with
no typing, at the demo's pacing (on a fake clock: the simulated minutes are asserted, not slept)."""

from __future__ import annotations

from pathlib import Path

import pytest
from PyQt6.QtCore import QEvent, QObject, QPoint, Qt
from PyQt6.QtWidgets import QApplication, QStyle, QStyleOptionButton, QWidget
from pytestqt.qtbot import QtBot

from app.clock import FakeAsyncClock
from app.config import Settings
from app.demo import (
    DEMO_MESSAGE,
    DEMO_PACING,
    DEMO_RECIPIENTS,
    demo_network,
    prepare_demo_window,
    seed_demo_desktop,
)
from app.i18n import Translator
from app.transports.simulated import SimulatedNetwork
from app.ui.main_window import MainWindow
from tests.helpers.desktop import Desktop, quota_used


@pytest.fixture
def network(fake_clock: FakeAsyncClock) -> SimulatedNetwork:
    # The demo's own simulated Telegram (latency, an occasional FloodWait), on the fake clock.
    return demo_network(fake_clock)


class KeyCounter(QObject):
    """Counts key presses anywhere in the application: the flow must need no typing."""

    def __init__(self) -> None:
        super().__init__()
        self.presses = 0

    def eventFilter(self, watched: QObject | None, event: QEvent | None) -> bool:
        if event is not None and event.type() == QEvent.Type.KeyPress:
            self.presses += 1
        return False


def checkbox_indicator(widget: QWidget) -> QPoint:
    """Where a person clicks a check box: the middle of its box."""
    option = QStyleOptionButton()
    option.initFrom(widget)
    style = widget.style()
    assert style is not None
    return style.subElementRect(QStyle.SubElement.SE_CheckBoxIndicator, option, widget).center()


def test_launch_to_a_finished_demo_broadcast_in_four_clicks_without_typing(
    qtbot: QtBot, desktop: Desktop, tmp_path: Path
) -> None:
    core = desktop.make_core(pacing=DEMO_PACING)
    desktop.run(seed_demo_desktop(core, desktop.data_dir))
    window = MainWindow(
        desktop.engine,
        core,
        settings=Settings(),
        settings_path=tmp_path / "settings.ini",
        log_dir=tmp_path / "logs",
        translator=Translator("ru"),
        demo_credentials=(desktop.backend.email, desktop.backend.password),
    )
    qtbot.addWidget(window)
    keys = KeyCounter()
    app = QApplication.instance()
    assert app is not None
    app.installEventFilter(keys)
    clicks: list[str] = []

    def click(what: str, widget: QWidget, pos: QPoint | None = None) -> None:
        clicks.append(what)
        qtbot.mouseClick(widget, Qt.MouseButton.LeftButton, pos=pos or widget.rect().center())

    # Launch, as app.main does once the core is built: the demo's tab is filled, then start().
    panel = window.broadcast_panel
    with (
        qtbot.wait_signal(window.broadcast.imported),
        qtbot.wait_signal(window.session.needs_sign_in),
    ):
        prepare_demo_window(window, desktop.data_dir)
        window.start()
    dialog = window.login_dialog
    assert dialog is not None and dialog.isVisible()
    assert not dialog.demo_note.isHidden()
    assert "демо-сервер создал этого пользователя" in dialog.demo_note.text()
    message = window.translator.tr(DEMO_MESSAGE)
    assert message.startswith("Здравствуйте! Это демо TGFlow")
    assert panel.message.toPlainText() == message
    assert window.broadcast.recipients == DEMO_RECIPIENTS
    assert panel.file_directory == desktop.data_dir  # the file dialog opens at the demo's CSV
    assert not panel.opt_in.isChecked()  # the opt-in is the user's own click

    # 1. Sign in (the dialog is filled in).
    with qtbot.wait_signal(window.session.signed_in, timeout=30_000):
        click("sign in", dialog.sign_in_button)
    qtbot.wait_until(lambda: panel.account.currentData() is not None)
    # 2. The Broadcast tab.
    bar = window.tabs.tabBar()
    assert bar is not None
    click("broadcast tab", bar, bar.tabRect(window.tabs.indexOf(panel)).center())
    assert window.tabs.currentWidget() is panel
    # 3. The opt-in tick.
    click("opt-in", panel.opt_in, checkbox_indicator(panel.opt_in))
    assert panel.opt_in.isChecked() and window.broadcast.opted_in
    # 4. Start; the broadcast runs to its end.
    started_at = desktop.clock.now()
    with qtbot.wait_signal(window.broadcast.finished, timeout=120_000) as finished:
        click("start", panel.start_button)
    simulated = (desktop.clock.now() - started_at).total_seconds()

    final = finished.args[0]
    assert str(final.state) == "finished"
    assert (final.counts.sent, final.counts.failed, final.counts.pending) == (50, 0, 0)
    assert sorted(m.recipient for m in desktop.network.sent) == sorted(DEMO_RECIPIENTS)
    assert {m.text for m in desktop.network.sent} == {message}
    assert panel.state.text() == "Завершена."
    assert quota_used(desktop.backend) == (50, 0)
    assert clicks == ["sign in", "broadcast tab", "opt-in", "start"]
    assert keys.presses == 0
    # 50 messages at the demo pacing take well under a minute (pauses, latency, FloodWaits).
    assert simulated < 45, simulated
    app.removeEventFilter(keys)
