"""The desktop's main window over a test Desktop (tests/app/conftest.py), and its login dialog."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pytestqt.qtbot import QtBot

from app.config import Settings
from app.i18n import Translator
from app.ui.login_dialog import LoginDialog
from app.ui.main_window import MainWindow

if TYPE_CHECKING:
    from tests.helpers.desktop import Desktop


def main_window(
    qtbot: QtBot,
    desktop: Desktop,
    tmp_path: Path,
    *,
    credentials: tuple[str, str] | None = None,
    language: str = "ru",
) -> MainWindow:
    """A MainWindow on the desktop's engine and core; ``credentials`` prefill the login dialog
    as the demo's do (and make the window a demo's)."""
    assert desktop.core is not None
    window = MainWindow(
        desktop.engine,
        desktop.core,
        settings=Settings(),
        settings_path=tmp_path / "settings.ini",
        log_dir=tmp_path / "logs",
        translator=Translator(language),
        demo_credentials=credentials,
    )
    qtbot.addWidget(window)
    return window


def open_login(qtbot: QtBot, window: MainWindow) -> LoginDialog:
    """Start the window with no stored session: the login dialog opens."""
    with qtbot.wait_signal(window.session.needs_sign_in):
        window.start()
    dialog = window.login_dialog
    assert dialog is not None
    return dialog
