"""Activating a license file through the login dialog, the License panel in license-file mode,
replacing the file, deactivating it, and every refusal in both languages."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from PyQt6.QtWidgets import QLineEdit, QMessageBox
from pytestqt.qtbot import QtBot

from app.i18n import Translator
from app.ui.license_file_dialog import LicenseFileDialog
from app.ui.main_window import MainWindow
from tests.helpers.desktop import Desktop
from tests.helpers.desktop_license import KEY, TERMS, license_text, write_license
from tests.helpers.license_files import vendor
from tests.helpers.visible_text import foreign, widget_texts
from tests.helpers.windows import main_window, open_login

#: What the tests' own data is, not the window's language (names, module ids, the product).
DATA = ["ООО Ромашка", "marketplace", "multi_account", "tgflow", "advanced", "TGF-…"]


def _file_dialog(qtbot: QtBot, window: MainWindow) -> LicenseFileDialog:
    login = open_login(qtbot, window)
    login.license_file_button.click()
    dialog = login.license_file_dialog
    assert dialog is not None
    qtbot.wait_exposed(dialog)
    return dialog


def _activate(qtbot: QtBot, window: MainWindow, dialog: LicenseFileDialog, path: Path) -> None:
    dialog.path.setText(str(path))
    dialog.key.setText(KEY)
    with qtbot.wait_signal(window.session.signed_in, timeout=30_000):
        dialog.activate_button.click()


def test_activation_through_the_dialog_then_the_panel_shows_modules_and_limits(
    qtbot: QtBot, desktop: Desktop, tmp_path: Path
) -> None:
    path = write_license(tmp_path / "lic" / "company.lic", desktop.backend, desktop.clock.now())
    window = main_window(qtbot, desktop, tmp_path)
    dialog = _file_dialog(qtbot, window)
    # The key is masked until "Show" is ticked.
    assert dialog.key.echoMode() is QLineEdit.EchoMode.Password
    dialog.show_key.setChecked(True)
    assert dialog.key.echoMode() is QLineEdit.EchoMode.Normal
    dialog.show_key.setChecked(False)
    _activate(qtbot, window, dialog, path)

    login = window.login_dialog
    assert login is not None and not login.isVisible() and not dialog.isVisible()
    assert not window.banner.isVisible()
    assert window.user_label.text() == "Файл лицензии: ООО Ромашка"
    assert not window.sign_in_action.isEnabled()
    panel = window.license_panel
    box = panel.file_box
    assert box.isVisible() and not panel._devices_box.isVisible()
    values = {name: label.text() for name, label in box.values.items()}
    assert values["customer"] == "ООО Ромашка"
    assert values["product"] == "tgflow, тариф advanced"
    assert values["modules"] == "• marketplace\n• multi_account"
    assert values["limits"].splitlines() == [
        "пользователей: 25",
        "отделов: без ограничений",
        "интеграций: 3",
        "запросов к API в минуту: 600",
        "сообщений в месяц: 5",
    ]
    assert values["version"] == "1"
    assert values["key"] == "…" + KEY[-4:]
    assert not box.grace.isVisible()
    assert panel.quota_bar.values() == (0, 0, 5)
    # The whole key shows nowhere in the window.
    assert not [text for _w, text in widget_texts(window) if KEY in text]
    assert window.tabs.isTabEnabled(window.tabs.indexOf(window.marketplace_tab))

    # A restart: the kept file is verified again and the program starts licensed.
    window.close()
    desktop.close_core()
    desktop.make_core()
    again = main_window(qtbot, desktop, tmp_path)
    with qtbot.wait_signal(again.session.signed_in, timeout=30_000):
        again.start()
    assert again.license_panel.file_box.values["customer"].text() == "ООО Ромашка"
    assert again.login_dialog is None


def _refusals(desktop: Desktop, tmp_path: Path) -> list[tuple[str, str, str, dict[str, str]]]:
    """(what, file text, key typed, expected message key and fields) for every refusal."""
    backend, now = desktop.backend, desktop.clock.now()
    good = license_text(backend, now)
    lines = good.splitlines()
    # A character of the signed payload changed (the middle of the JWS, past the header).
    middle = (lines.index("") + 1 + lines.index("-----END TGFLOW LICENSE-----")) // 2
    line = lines[middle]
    lines[middle] = line[:30] + ("A" if line[30] != "A" else "B") + line[31:]
    stranger = vendor(tmp_path / "stranger").license_file(
        replace(TERMS, valid_from=now - timedelta(days=1), valid_until=now + timedelta(days=9)),
        now=now,
        encrypt=True,
    )
    revoked_key = "TGF-REVOKED-0000-0001"
    return [
        ("wrong key", good, "TGF-0000-0000-0000-0000", {"key": "license_file.refused.wrong_key"}),
        ("pin missing", stranger, KEY, {"key": "license_file.refused.untrusted_key"}),
        (
            "expired",
            license_text(
                backend,
                now,
                valid_from=now - timedelta(days=400),
                valid_until=now - timedelta(days=30),
            ),
            KEY,
            {"key": "license_file.refused.expired"},
        ),
        (
            "not yet valid",
            license_text(
                backend,
                now,
                valid_from=now + timedelta(days=10),
                valid_until=now + timedelta(days=400),
            ),
            KEY,
            {"key": "license_file.refused.not_yet_valid"},
        ),
        (
            "other version",
            license_text(backend, now, min_version="9.0", max_version=None),
            KEY,
            {"key": "license_file.refused.version", "version": "0.1.0"},
        ),
        (
            "other domain",
            license_text(backend, now, domain="crm.other.example"),
            KEY,
            {"key": "license_file.refused.domain", "installed": "pc1.corp.example.com"},
        ),
        ("tampered", "\n".join(lines), KEY, {"key": "license_file.refused.tampered"}),
        ("not a license file", "hello", KEY, {"key": "license_file.refused.tampered"}),
        (
            "revoked",
            license_text(backend, now, license_key=revoked_key, revoke=True),
            revoked_key,
            {"key": "license_file.refused.revoked"},
        ),
        ("no key", good, " ", {"key": "license_file.refused.no_key"}),
    ]


@pytest.mark.parametrize("language", ["ru", "en"])
def test_every_refusal_is_a_readable_message_in_the_window_language(
    qtbot: QtBot, desktop: Desktop, tmp_path: Path, language: str
) -> None:
    tr = Translator(language)
    window = main_window(qtbot, desktop, tmp_path, language=language)
    dialog = _file_dialog(qtbot, window)
    cases = _refusals(desktop, tmp_path)
    # The clock set back: checked last (the time seen so far is later).
    cases.append(("clock back", cases[0][1], KEY, {"key": "license_file.refused.clock_back"}))
    for number, (what, text, key, expected) in enumerate(cases):
        if what == "clock back":
            desktop.clock.advance(-3600)
        path = tmp_path / f"case{number}.lic"
        path.write_text(text, encoding="utf-8")
        dialog.path.setText(str(path))
        dialog.key.setText(key)
        with qtbot.wait_signal(window.session.activation_failed, timeout=30_000) as failed:
            dialog.activate_button.click()
        fields = {k: v for k, v in expected.items() if k != "key"}
        message = failed.args[0]
        assert message == tr.tr(expected["key"], **fields), what
        assert dialog.error.text() == message and dialog.isVisible()
        assert "Traceback" not in message and not foreign(message, language, data=DATA), what
    missing = tmp_path / "missing.lic"
    dialog.path.setText(str(missing))
    dialog.key.setText(KEY)
    with qtbot.wait_signal(window.session.activation_failed) as failed:
        dialog.activate_button.click()
    assert failed.args[0] == tr.tr("license_file.refused.unreadable")
    dialog.path.setText("")
    with qtbot.wait_signal(window.session.activation_failed) as failed:
        dialog.activate_button.click()
    assert failed.args[0] == tr.tr("license_file.error.no_file")
    assert window.banner.isVisible()  # nothing was activated


def test_a_newer_file_replaces_an_older_one_is_refused_and_grace_warns(
    qtbot: QtBot, desktop: Desktop, tmp_path: Path
) -> None:
    backend, now = desktop.backend, desktop.clock.now()
    window = main_window(qtbot, desktop, tmp_path)
    dialog = _file_dialog(qtbot, window)
    _activate(
        qtbot, window, dialog, write_license(tmp_path / "v2.lic", backend, now, file_version=2)
    )
    box = window.license_panel.file_box
    assert box.values["version"].text() == "2"

    # "Replace with a newer file…" (the file chosen): version 3, more messages.
    newer = write_license(
        tmp_path / "v3.lic",
        backend,
        now,
        file_version=3,
        limits=TERMS.limits.model_copy(update={"messages": 50}),
        modules=("marketplace",),
    )
    with qtbot.wait_signal(window.license.replaced, timeout=30_000):
        box._chosen(str(newer))
    assert box.values["version"].text() == "3"
    assert box.replaced.text() == "Теперь действует версия 3 файла лицензии."
    assert window.license_panel.quota_bar.values() == (0, 0, 50)
    assert box.values["modules"].text() == "• marketplace"

    # An older version is refused with a clear message, and version 3 stays.
    older = write_license(tmp_path / "v1.lic", backend, now, file_version=1)
    with qtbot.wait_signal(window.license.failed, timeout=30_000) as failed:
        window.license.replace_file(older)
    assert failed.args[0] == Translator("ru").tr("license_file.refused.outdated")
    assert window.license_panel.error.text() == failed.args[0]
    assert box.values["version"].text() == "3"

    # The later online heartbeat's hook: a newer file arrives as text. This one is past its
    # paid validity, in grace: the panel warns.
    grace = license_text(
        backend,
        now,
        file_version=4,
        valid_from=now - timedelta(days=400),
        valid_until=now - timedelta(days=2),
    )
    with qtbot.wait_signal(window.license.replaced, timeout=30_000):
        window.license.newer_file_arrived(grace)
    assert box.values["version"].text() == "4"
    assert box.grace.isVisible()
    assert box.grace.text().startswith("Оплаченный срок закончился")


def test_an_action_asked_for_while_the_panel_refreshes_waits_its_turn_and_runs(
    qtbot: QtBot, desktop: Desktop, tmp_path: Path
) -> None:
    # A heartbeat's word refreshes the panel at any moment; the user's click meanwhile must
    # run after it, never be dropped because the panel was busy.
    backend, now = desktop.backend, desktop.clock.now()
    window = main_window(qtbot, desktop, tmp_path)
    _activate(
        qtbot,
        window,
        _file_dialog(qtbot, window),
        write_license(tmp_path / "v2.lic", backend, now, file_version=2),
    )
    model = window.license
    older = write_license(tmp_path / "v1.lic", backend, now, file_version=1)
    with qtbot.wait_signal(model.failed, timeout=30_000) as failed:
        if not model.busy:
            assert model.refresh()
        assert model.busy
        assert model.replace_file(older)
    assert failed.args[0] == Translator("ru").tr("license_file.refused.outdated")
    qtbot.wait_until(lambda: not model.busy)
    with qtbot.wait_signal(model.deactivated, timeout=30_000):
        assert model.refresh()
        assert model.deactivate()
    assert not model.busy
    assert window.license_panel.file_box.isHidden()


def test_without_the_marketplace_module_the_tab_is_off_and_deactivate_signs_out(
    qtbot: QtBot, desktop: Desktop, tmp_path: Path
) -> None:
    path = write_license(
        tmp_path / "basic.lic", desktop.backend, desktop.clock.now(), modules=("multi_account",)
    )
    window = main_window(qtbot, desktop, tmp_path)
    dialog = _file_dialog(qtbot, window)
    _activate(qtbot, window, dialog, path)
    assert not window.tabs.isTabEnabled(window.tabs.indexOf(window.marketplace_tab))

    box = window.license_panel.file_box
    confirm = box.ask_deactivate()
    yes = confirm.button(QMessageBox.StandardButton.Yes)
    assert yes is not None
    with qtbot.wait_signal(window.session.signed_out, timeout=30_000):
        yes.click()
    assert window.banner.isVisible()
    assert window.login_dialog is not None and window.login_dialog.isVisible()
    assert not box.isVisible()
    assert window.tabs.isTabEnabled(window.tabs.indexOf(window.marketplace_tab))
    core = desktop.core
    assert core is not None and not core.license_files.kept


def test_the_demo_writes_a_license_file_the_dialog_offers_filled_in(
    qtbot: QtBot, desktop: Desktop, tmp_path: Path
) -> None:
    from app.config import Settings
    from app.demo import DEMO_LICENSE_FILE, write_demo_license

    demo_dir = tmp_path / "demo"
    demo_dir.mkdir()
    path, key = write_demo_license(desktop.backend, demo_dir, "pc1.corp.example.com")
    assert path == demo_dir / DEMO_LICENSE_FILE and desktop.backend.license_file == (path, key)
    window = MainWindow(
        desktop.engine,
        desktop.core,  # type: ignore[arg-type]
        settings=Settings(),
        settings_path=tmp_path / "settings.ini",
        log_dir=tmp_path / "logs",
        translator=Translator("ru"),
        demo_credentials=(desktop.backend.email, desktop.backend.password),
        demo_license=(path, key),
    )
    qtbot.addWidget(window)
    dialog = _file_dialog(qtbot, window)
    # Filled in, the key shown (the demo's, new at each start), the chooser in the demo folder.
    assert (dialog.path.text(), dialog.key.text()) == (str(path), key)
    assert dialog.demo_note.isVisible()
    assert dialog.key.echoMode() is QLineEdit.EchoMode.Normal
    assert dialog.directory == demo_dir
    chooser = dialog.choose_file()
    assert Path(chooser.directory().absolutePath()) == demo_dir
    chooser.close()
    # Signed by the demo server's license key, which the demo pins: one click activates it.
    with qtbot.wait_signal(window.session.signed_in, timeout=30_000):
        dialog.activate_button.click()
    box = window.license_panel.file_box
    assert box.values["customer"].text() == "TGFlow Demo"
    assert box.values["modules"].text() == "• marketplace\n• multi_account"
    assert box.directory == demo_dir


def test_sign_out_in_license_file_mode_asks_before_forgetting_the_file(
    qtbot: QtBot, desktop: Desktop, tmp_path: Path
) -> None:
    path = write_license(tmp_path / "a.lic", desktop.backend, desktop.clock.now())
    window = main_window(qtbot, desktop, tmp_path)
    dialog = _file_dialog(qtbot, window)
    _activate(qtbot, window, dialog, path)
    assert dialog.key.text() == ""  # the typed key is not kept in the dialog
    assert window.sign_out_action.isEnabled()
    window.sign_out_action.trigger()
    box = window.license_panel.file_box.confirm
    assert box is not None
    no = box.button(QMessageBox.StandardButton.No)
    assert no is not None
    no.click()
    core = desktop.core
    assert core is not None and core.file_mode and core.license_files.kept
    assert not window.banner.isVisible()
