"""The login dialog, resuming a stored session, and the License panel."""

from __future__ import annotations

from pathlib import Path

import httpx
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import RSAAlgorithm
from PyQt6.QtCore import QPoint, Qt
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
