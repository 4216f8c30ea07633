"""The login dialog, resuming a stored session, and the License panel."""

from __future__ import annotations

from pathlib import Path

import httpx
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import RSAAlgorithm
from PyQt6.QtCore import QPoint, QRect, Qt
from PyQt6.QtGui import QColor, QImage
from pytestqt.qtbot import QtBot

from agent.protocol import public_key_pin
from app.ui.main_window import MainWindow
from tests.helpers.desktop import Desktop
from tests.helpers.windows import main_window, open_login


def make_window(
    qtbot: QtBot, desktop: Desktop, tmp_path: Path, *, password: str | None = None
) -> MainWindow:
    credentials = (desktop.backend.email, password or desktop.backend.password)
    return main_window(qtbot, desktop, tmp_path, credentials=credentials)


def test_sign_in_through_the_dialog_then_the_license_panel_shows_plan_and_quota(
    qtbot: QtBot, desktop: Desktop, tmp_path: Path
) -> None:
    window = make_window(qtbot, desktop, tmp_path)
    with qtbot.wait_signal(window.session.needs_sign_in):
        window.start()
    dialog = window.login_dialog
    assert dialog is not None and dialog.isVisible()
    assert window.isVisible()
    assert dialog.email.text() == desktop.backend.email  # prefilled with the demo credentials
    assert window.banner.isVisible()

    with qtbot.wait_signal(window.session.signed_in, timeout=30_000):
        dialog.sign_in_button.click()
        # The click returns at once: the sign-in runs on the engine.
        assert dialog.status.text() == "Входим…"
        assert not dialog.sign_in_button.isEnabled()

    assert not dialog.isVisible()
    assert not window.banner.isVisible()
    panel = window.license_panel
    assert panel.plan_value.text() == "demo"
    assert panel.status_value.text() == "активна"
    assert panel.quota_bar.values() == (0, 0, 1000)
    assert "осталось 1\u202f000" in panel.quota_text.text()
    assert panel.period_end.text().startswith("Период заканчивается")
    assert panel.lease_value.text().startswith("разрешена до")
    assert panel.devices.rowCount() == 1
    item = panel.devices.item(0, 0)
    assert item is not None and item.text() == "test desktop"
    assert not panel.reason.isVisible()
    assert desktop.backend.email in window.user_label.text()


def test_a_wrong_password_shows_an_error_and_keeps_the_dialog(
    qtbot: QtBot, desktop: Desktop, tmp_path: Path
) -> None:
    window = make_window(qtbot, desktop, tmp_path, password="not the password")
    dialog = open_login(qtbot, window)

    with (
        qtbot.assert_not_emitted(window.session.signed_in),
        qtbot.wait_signal(window.session.sign_in_failed, timeout=30_000) as blocker,
    ):
        dialog.sign_in_button.click()

    assert blocker.args == ["Неверный e-mail или пароль."]
    assert dialog.isVisible()
    assert dialog.error.isVisible()
    assert dialog.error.text() == "Неверный e-mail или пароль."
    assert "Traceback" not in dialog.error.text()
    assert dialog.sign_in_button.isEnabled()
    assert window.session.email is None


def test_an_empty_form_is_refused_without_asking_the_server(
    qtbot: QtBot, desktop: Desktop, tmp_path: Path
) -> None:
    window = make_window(qtbot, desktop, tmp_path)
    with qtbot.wait_signal(window.session.sign_in_failed) as blocker:
        assert window.session.sign_in("", "") is False
    assert blocker.args == ["Введите e-mail и пароль."]


def test_a_stored_session_is_resumed_without_the_dialog(
    qtbot: QtBot, desktop: Desktop, tmp_path: Path
) -> None:
    desktop.sign_in()  # a previous run signed in and stored the refresh token
    window = make_window(qtbot, desktop, tmp_path)
    with (
        qtbot.assert_not_emitted(window.session.needs_sign_in),
        qtbot.wait_signal(window.session.signed_in, timeout=30_000),
    ):
        window.start()
    assert window.login_dialog is None
    assert window.license_panel.plan_value.text() == "demo"


def test_signing_out_clears_the_panel_and_opens_the_dialog(
    qtbot: QtBot, desktop: Desktop, tmp_path: Path
) -> None:
    desktop.sign_in()
    window = make_window(qtbot, desktop, tmp_path)
    with qtbot.wait_signal(window.session.signed_in, timeout=30_000):
        window.start()
    with qtbot.wait_signal(window.session.signed_out, timeout=30_000):
        window.sign_out_action.trigger()
    assert window.license_panel.plan_value.text() == "—"
    assert window.login_dialog is not None and window.login_dialog.isVisible()
    assert window.banner.isVisible()
    # The banner says "not signed in"; the License panel says what shows there after signing in
    # instead of repeating it.
    assert window.banner_text.text().startswith("Вход не выполнен")
    reason = window.license_panel.reason.text()
    assert reason == "Тариф, квота и устройства появятся здесь после входа."
    assert "Вход не выполнен" not in reason


def test_enter_with_a_wrong_password_shows_the_error_like_the_button(
    qtbot: QtBot, desktop: Desktop, tmp_path: Path
) -> None:
    window = make_window(qtbot, desktop, tmp_path, password="not the password")
    dialog = open_login(qtbot, window)
    qtbot.wait_until(lambda: dialog.isActiveWindow() or not dialog.isVisible())
    dialog.password.setFocus()
    with (
        qtbot.assert_not_emitted(dialog.rejected),
        qtbot.wait_signal(window.session.sign_in_failed, timeout=30_000),
    ):
        qtbot.keyClick(dialog.password, Qt.Key.Key_Return)
    assert dialog.isVisible()
    assert dialog.error.text() == "Неверный e-mail или пароль."
    assert dialog.password.text() == "not the password"  # still there to correct
    # Enter again, now with the right password, signs in.
    dialog.password.setText(desktop.backend.password)
    with qtbot.wait_signal(window.session.signed_in, timeout=30_000):
        qtbot.keyClick(dialog.password, Qt.Key.Key_Return)
    assert not dialog.isVisible()


def test_the_dialog_grows_to_show_a_long_error(
    qtbot: QtBot, desktop: Desktop, tmp_path: Path
) -> None:
    window = make_window(qtbot, desktop, tmp_path)
    dialog = window.show_login()
    qtbot.wait_exposed(dialog)
    before = dialog.height()
    dialog.show_error("Причина. " * 40)
    qtbot.wait_until(lambda: dialog.height() > before)
    error = dialog.error
    assert error.height() >= error.heightForWidth(error.width())
    assert error.geometry().bottom() < dialog.sign_in_button.mapTo(dialog, QPoint(0, 0)).y()


def test_an_unpinned_signing_key_is_reported_as_a_settings_problem(
    qtbot: QtBot, desktop: Desktop, tmp_path: Path
) -> None:
    desktop.close_core()
    other = public_key_pin(ec.generate_private_key(ec.SECP256R1()).public_key())
    desktop.make_core(pins=(other,))  # settings.ini pins a key the server does not use
    window = make_window(qtbot, desktop, tmp_path)
    with qtbot.wait_signal(window.session.needs_sign_in):
        window.start()
    with qtbot.wait_signal(window.session.sign_in_failed, timeout=30_000) as blocker:
        window.login_dialog.sign_in_button.click()  # type: ignore[union-attr]
    (message,) = blocker.args
    auth_pin = _served_auth_pin(desktop)
    assert "jwt_public_key_fingerprint" in message
    assert "tgflow-server keys pins" in message
    assert auth_pin in message  # which pin is missing
    assert "Сессия" not in message


def _served_auth_pin(desktop: Desktop) -> str:
    jwks = httpx.get(desktop.backend.url + "/.well-known/jwks.json").json()
    (auth,) = [k for k in jwks["keys"] if k["alg"] == "RS256"]
    key = RSAAlgorithm.from_jwk(auth)
    assert isinstance(key, rsa.RSAPublicKey)
    return public_key_pin(key)


def test_the_demo_dialog_reopens_with_the_demo_password_after_a_wrong_one(
    qtbot: QtBot, desktop: Desktop, tmp_path: Path
) -> None:
    window = make_window(qtbot, desktop, tmp_path)
    dialog = open_login(qtbot, window)
    dialog.password.setText("not the password")
    with qtbot.wait_signal(window.session.sign_in_failed, timeout=30_000):
        dialog.sign_in_button.click()
    dialog.cancel_button.click()
    assert not dialog.isVisible()

    window.sign_in_action.trigger()
    assert dialog.isVisible()
    # The note still says both fields are filled in: they are, with the demo's credentials.
    assert dialog.demo_note.isVisible()
    assert dialog.email.text() == desktop.backend.email
    assert dialog.password.text() == desktop.backend.password
    assert not dialog.error.isVisible()
    with qtbot.wait_signal(window.session.signed_in, timeout=30_000):
        dialog.sign_in_button.click()


def test_outside_the_demo_cancel_forgets_the_typed_password(
    qtbot: QtBot, desktop: Desktop, tmp_path: Path
) -> None:
    window = main_window(qtbot, desktop, tmp_path)
    dialog = open_login(qtbot, window)
    dialog.email.setText(desktop.backend.email)
    dialog.password.setText("typed secret")
    dialog.cancel_button.click()
    assert dialog.password.text() == ""
    window.sign_in_action.trigger()
    assert dialog.isVisible()
    assert dialog.email.text() == desktop.backend.email
    assert dialog.password.text() == ""


def test_the_english_window_groups_thousands_the_english_way(
    qtbot: QtBot, desktop: Desktop, tmp_path: Path
) -> None:
    desktop.sign_in()
    window = main_window(qtbot, desktop, tmp_path, language="en")
    with qtbot.wait_signal(window.session.signed_in, timeout=30_000):
        window.start()
    text = window.license_panel.quota_text.text()
    assert "remaining 1,000" in text and "of 1,000" in text
    assert "\u202f" not in text
    # Switching to Russian regroups with the thin space.
    window.set_language("ru")
    assert "осталось 1\u202f000" in window.license_panel.quota_text.text()


def test_the_file_menu_offers_only_what_the_session_allows(
    qtbot: QtBot, desktop: Desktop, tmp_path: Path
) -> None:
    window = make_window(qtbot, desktop, tmp_path)
    dialog = open_login(qtbot, window)
    assert window.sign_in_action.isEnabled() and not window.sign_out_action.isEnabled()
    with qtbot.wait_signal(window.session.signed_in, timeout=30_000):
        dialog.sign_in_button.click()
    assert not window.sign_in_action.isEnabled() and window.sign_out_action.isEnabled()
    # Triggered anyway (a shortcut, a stale menu): no dialog over a signed-in window.
    window.sign_in_action.trigger()
    assert not dialog.isVisible()
    window.set_language("en")
    assert not window.sign_in_action.isEnabled() and window.sign_out_action.isEnabled()
    with qtbot.wait_signal(window.session.signed_out, timeout=30_000):
        window.sign_out_action.trigger()
    assert window.sign_in_action.isEnabled() and not window.sign_out_action.isEnabled()


def _darkest(image: QImage, rect: QRect) -> int:
    """The lowest grey level (0–255) drawn inside ``rect``: the text's ink."""
    return min(
        QColor(image.pixel(x, y)).lightness()
        for x in range(rect.left(), rect.right())
        for y in range(rect.top(), rect.bottom())
    )


def test_a_disabled_menu_entry_looks_disabled(
    qtbot: QtBot, desktop: Desktop, tmp_path: Path
) -> None:
    window = make_window(qtbot, desktop, tmp_path)
    open_login(qtbot, window).reject()
    bar = window.menuBar()
    assert bar is not None
    menu = bar.actions()[0].menu()
    assert menu is not None
    menu.resize(menu.sizeHint())  # drawn without popping up (no grab of keyboard and mouse)
    image = menu.grab().toImage()
    enabled = _darkest(image, menu.actionGeometry(window.sign_in_action))
    disabled = _darkest(image, menu.actionGeometry(window.sign_out_action))
    # The window's ink is used for every widget's text; without a rule of its own a disabled
    # entry is drawn in it too and reads as available.
    assert window.sign_in_action.isEnabled() and not window.sign_out_action.isEnabled()
    assert disabled - enabled > 60, (enabled, disabled)


def test_nothing_jumps_when_an_error_shows_or_the_banner_goes(
    qtbot: QtBot, desktop: Desktop, tmp_path: Path
) -> None:
    window = make_window(qtbot, desktop, tmp_path)
    dialog = open_login(qtbot, window)
    tabs_top = window.tabs.mapTo(window, QPoint(0, 0)).y()
    button_at = dialog.sign_in_button.mapTo(dialog, QPoint(0, 0))
    right = dialog.password.text()
    dialog.password.setText("not the password")
    with qtbot.wait_signal(window.session.sign_in_failed, timeout=30_000):
        dialog.sign_in_button.click()
    assert dialog.error.isVisible()
    assert dialog.sign_in_button.mapTo(dialog, QPoint(0, 0)) == button_at
    dialog.password.setText(right)
    with qtbot.wait_signal(window.session.signed_in, timeout=30_000):
        dialog.sign_in_button.click()
    assert not window.banner.isVisible()
    central = window.centralWidget()
    layout = central.layout() if central is not None else None
    assert layout is not None
    layout.activate()
    assert window.tabs.mapTo(window, QPoint(0, 0)).y() == tabs_top
