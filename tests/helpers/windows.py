"""The desktop's main window over a test Desktop (tests/app/conftest.py), and its login dialog."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

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
    **options: Any,
) -> MainWindow:
    """A MainWindow on the desktop's engine and core; ``credentials`` prefill the login dialog
    as the demo's do (and make the window a demo's); ``options``: more of its arguments."""
    assert desktop.core is not None
    window = MainWindow(
        desktop.engine,
        desktop.core,
        settings=Settings(),
        settings_path=tmp_path / "settings.ini",
        log_dir=tmp_path / "logs",
        translator=Translator(language),
        demo_credentials=credentials,
        **options,
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


def billing_window(
    qtbot: QtBot,
    desktop: Desktop,
    tmp_path: Path,
    opened: list[str],
    *,
    poll_ms: int,
    language: str = "en",
) -> MainWindow:
    """A signed-in window on its "Plans & billing" tab, loaded; the checkouts it opens are
    appended to ``opened`` instead of going to a browser."""
    desktop.sign_in()
    window = main_window(
        qtbot,
        desktop,
        tmp_path,
        language=language,
        billing_opener=opened.append,
        billing_poll_ms=poll_ms,
    )
    with qtbot.wait_signal(window.session.signed_in, timeout=30_000):
        window.start()
    # Built when its tab is first shown, and loaded because it is shown.
    assert window.billing is None and window.billing_panel is None
    window.tabs.setCurrentWidget(window.billing_tab)
    qtbot.wait_until(
        lambda: window.billing is not None and window.billing.snapshot is not None, timeout=30_000
    )
    assert window.billing_panel is not None and window.billing_panel.isVisible()
    return window
