"""What a person notices: stale warnings go when fixed, controls stay put when an error shows,
captions match their boxes, disabled buttons look disabled, the Settings tab names the server in
use."""

from __future__ import annotations

from pathlib import Path

from PyQt6.QtCore import QPoint
from PyQt6.QtGui import QColor
from PyQt6.QtWidgets import QCheckBox, QLineEdit, QPushButton, QWidget
from pytestqt.qtbot import QtBot

from app.config import Settings, save_settings
from app.engine import Engine
from app.i18n import Translator
from app.ui.main_window import MainWindow
from app.ui.settings_panel import SettingsPanel
from app.ui.style import load_style_sheet
from app.viewmodels.settings import SettingsViewModel
from tests.helpers.desktop import Desktop
from tests.helpers.windows import main_window, open_login


def settings_panel(qtbot: QtBot, engine: Engine, tmp_path: Path) -> SettingsPanel:
    path = tmp_path / "settings.ini"
    save_settings(path, {})
    model = SettingsViewModel(engine, Translator("ru"), path)
    panel = SettingsPanel(model, model.translator)
    model.setParent(panel)
    qtbot.addWidget(panel)
    with qtbot.wait_signal(model.loaded):
        model.load()
    return panel


def test_the_anti_spam_caption_follows_its_box(
    qtbot: QtBot, engine: Engine, tmp_path: Path
) -> None:
    panel = settings_panel(qtbot, engine, tmp_path)
    box = panel.editors[("anti_spam", "enabled")]
    caption = panel._help[("anti_spam", "enabled")]
    assert isinstance(box, QCheckBox) and box.isChecked()  # the default
    assert caption.text().startswith("Включено")
    box.setChecked(False)
    assert caption.text().startswith("Выключено")
    panel._tr.set_language("en")
    assert caption.text().startswith("Off")
    box.setChecked(True)
    assert caption.text().startswith("On")


def test_a_warning_goes_once_its_field_is_fixed(
    qtbot: QtBot, engine: Engine, tmp_path: Path
) -> None:
    panel = settings_panel(qtbot, engine, tmp_path)
    editor = panel.editors[("broadcast", "max_delay_sec")]
    assert isinstance(editor, QLineEdit)
    editor.setText("soon")
    with qtbot.wait_signal(panel._vm.failed):
        panel.save_button.click()
    assert not panel.error.isHidden() and editor.property("invalid") is True
    editor.setText("9")  # the user corrects the field: the warning about it is stale now
    assert panel.error.isHidden()
    assert editor.property("invalid") is False
    assert panel.status.text() == ""


def make_window(qtbot: QtBot, desktop: Desktop, tmp_path: Path, *, demo: bool) -> MainWindow:
    credentials = (desktop.backend.email, desktop.backend.password) if demo else None
    window = main_window(qtbot, desktop, tmp_path, credentials=credentials)
    window.resize(1200, 800)
    window.show()
    qtbot.wait_exposed(window)
    return window


def test_the_settings_tab_names_the_server_in_use(
    qtbot: QtBot, desktop: Desktop, tmp_path: Path
) -> None:
    window = make_window(qtbot, desktop, tmp_path, demo=True)
    label = window.settings_panel.server_label
    assert desktop.backend.url in label.text()
    assert "встроенный демо-сервер" in label.text()
    # Settings() has the example's api_base_url; the program uses the demo's own server.
    assert Settings().license.api_base_url != desktop.backend.url


def _top(widget: QWidget, window: QWidget) -> int:
    return widget.mapTo(window, QPoint(0, 0)).y()


def test_controls_stay_put_when_an_error_appears(
    qtbot: QtBot, desktop: Desktop, tmp_path: Path
) -> None:
    window = make_window(qtbot, desktop, tmp_path, demo=False)
    window.tabs.setCurrentWidget(window.accounts_panel)
    accounts = window.accounts_panel
    before = (_top(accounts.remove_button, window), _top(accounts.send_code_button, window))
    accounts._failed("Telegram: something went wrong")
    accounts.add_error.setText("Telegram refused the login: PHONE_NUMBER_INVALID")
    accounts.add_error.show()
    qtbot.wait_until(lambda: accounts.error.isVisible())
    after = (_top(accounts.remove_button, window), _top(accounts.send_code_button, window))
    assert after == before

    window.tabs.setCurrentWidget(window.broadcast_panel)
    panel = window.broadcast_panel
    qtbot.wait_until(panel.start_button.isVisible)
    before_start = _top(panel.start_button, window)
    panel.show_error("Сначала войдите.")
    qtbot.wait_until(panel.error.isVisible)
    assert _top(panel.start_button, window) == before_start


def _has_colour(button: QPushButton, colour: QColor) -> bool:
    image = button.grab().toImage()
    for y in range(image.height()):
        for x in range(image.width()):
            pixel = image.pixelColor(x, y)
            near = (
                abs(pixel.red() - colour.red())
                + abs(pixel.green() - colour.green())
                + abs(pixel.blue() - colour.blue())
            )
            if near < 60:
                return True
    return False


def test_a_disabled_danger_button_does_not_look_clickable(qtbot: QtBot) -> None:
    host = QWidget()
    host.setStyleSheet(load_style_sheet())
    button = QPushButton("Остановить", host)
    button.setObjectName("danger")
    qtbot.addWidget(host)
    host.show()
    red = QColor("#c62828")
    assert _has_colour(button, red)  # enabled: red text
    button.setEnabled(False)
    assert not _has_colour(button, red)


def test_stop_and_pause_are_disabled_while_idle(
    qtbot: QtBot, desktop: Desktop, tmp_path: Path
) -> None:
    window = make_window(qtbot, desktop, tmp_path, demo=False)
    panel = window.broadcast_panel
    assert not panel.stop_button.isEnabled()
    assert not panel.pause_button.isEnabled()
    account = window.accounts_panel
    assert account.selected_id() is None
    assert not account.remove_button.isEnabled()


def test_a_refused_phone_number_warning_goes_when_the_user_corrects_it(
    qtbot: QtBot, desktop: Desktop, tmp_path: Path
) -> None:
    window = make_window(qtbot, desktop, tmp_path, demo=False)
    window.tabs.setCurrentWidget(window.accounts_panel)
    accounts = window.accounts_panel
    accounts.phone.setText("12")
    with qtbot.wait_signal(window.accounts.add_failed):
        accounts.send_code_button.click()
    assert accounts.add_error.isVisible()
    qtbot.keyClicks(accounts.phone, "3")
    assert accounts.add_error.isHidden()


def test_sign_in_first_goes_once_signed_in(qtbot: QtBot, desktop: Desktop, tmp_path: Path) -> None:
    window = make_window(qtbot, desktop, tmp_path, demo=True)
    dialog = open_login(qtbot, window)
    panel = window.broadcast_panel
    window.tabs.setCurrentWidget(panel)
    panel.show_error(window._tr.tr("error.not_signed_in"))  # what Start showed before sign-in
    assert panel.error.isVisible()
    with qtbot.wait_signal(window.session.signed_in, timeout=30_000):
        dialog.sign_in_button.click()
    assert panel.error.isHidden()


def test_the_message_box_is_in_view_at_1024_by_768(
    qtbot: QtBot, desktop: Desktop, tmp_path: Path
) -> None:
    window = main_window(qtbot, desktop, tmp_path)
    window.resize(1024, 768)
    window.show()
    qtbot.wait_exposed(window)
    window.tabs.setCurrentWidget(window.broadcast_panel)
    panel = window.broadcast_panel
    qtbot.wait_until(panel.start_button.isVisible)
    # The whole editor shows without scrolling the setup column, and Start stays in view.
    message = panel.message
    assert message.visibleRegion().boundingRect().size() == message.size()
    assert not panel.start_button.visibleRegion().isEmpty()
    assert window.height() <= 768
