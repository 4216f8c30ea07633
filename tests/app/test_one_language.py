"""One language at a time: every panel, the login dialog and Qt's own dialogs, walked in Russian
and in English, with the reasons lower layers give (a bad CSV line, a bad setting, a server's
refusal, the session log) on screen. In Russian no run of Latin letters may show that is not a
name or a technical token (tests/helpers/visible_text.py); in English no Cyrillic."""

from __future__ import annotations

import html
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from PyQt6.QtWidgets import QApplication, QDialogButtonBox, QFileDialog, QMessageBox, QWidget
from pytestqt.qtbot import QtBot

from agent.clock import SystemClock
from app.antispam import FloodPolicy
from app.clock import FakeAsyncClock
from app.config import Settings
from app.demo import DEMO_PACING, demo_network, prepare_demo_window, seed_demo_desktop
from app.demo_billing import DEMO_PLANS, DEMO_POINTS_PRODUCTS
from app.htmllog import SessionLog, SessionLogHandler
from app.i18n import Translator
from app.transports.simulated import SimulatedNetwork
from app.ui.main_window import MainWindow
from app.ui.update_notice import install_updates
from app.viewmodels.logs import localize_log
from tests.helpers.broadcast import Recorder
from tests.helpers.desktop import Desktop
from tests.helpers.releases import manifest
from tests.helpers.visible_text import foreign, foreign_texts, widget_texts

#: A pasted list with a good recipient and one bad line of each kind the parser reports.
PASTED = "\n".join(
    [
        "@good_user_1",
        "@ab",
        "@1abcde",
        "+12",
        "t.me/joinchat/xyz",
        "-100123",
        "8 (999) 123-45-67",
        "what?",
    ]
)


@pytest.fixture
def network(fake_clock: FakeAsyncClock) -> SimulatedNetwork:
    return demo_network(fake_clock)


@pytest.fixture
def session_log(tmp_path: Path) -> Iterator[SessionLog]:
    """This session's HTML log, fed by the ``tgflow`` loggers as app.main sets it up."""
    log = SessionLog(tmp_path / "logs", clock=SystemClock())
    handler = SessionLogHandler(log)
    root = logging.getLogger("tgflow")
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield log
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        log.close()


def check(
    root: QWidget, language: str, what: str, data: list[str], found: list[tuple[str, ...]]
) -> None:
    for where, text, runs in foreign_texts(root, language, data=data):
        found.append((what, where, text, ", ".join(runs)))


@pytest.mark.parametrize("language", ["ru", "en"])
def test_every_panel_speaks_one_language(
    qtbot: QtBot, desktop: Desktop, tmp_path: Path, session_log: SessionLog, language: str
) -> None:
    core = desktop.make_core(pacing=DEMO_PACING)
    desktop.run(seed_demo_desktop(core, desktop.data_dir))
    backend = desktop.backend
    assert backend.marketplace is not None
    settings_path = tmp_path / "settings.ini"
    opened: list[str] = []
    window = MainWindow(
        desktop.engine,
        core,
        settings=Settings(),
        settings_path=settings_path,
        log_dir=tmp_path / "logs",
        translator=Translator(language),
        demo_credentials=(backend.email, backend.password),
        marketplace_defaults=(backend.url, backend.marketplace.admin_token),
        current_log=session_log.path,
        billing_opener=opened.append,
    )
    qtbot.addWidget(window)
    window.resize(1200, 800)
    # The test's own values (addresses, names, the message) are data, not the window's language.
    # The plan's name ("demo") is the server's.
    data = [backend.email, backend.url, str(tmp_path), "TGFlow", "Demo", "demo", "test desktop"]
    # So are the plans' names (the default plan of new accounts is called "free").
    data += [plan.name for plan in DEMO_PLANS] + ["free"]
    found: list[tuple[str, ...]] = []

    # The login dialog, with a refused sign-in's message (a server problem by its code).
    with qtbot.wait_signal(window.session.needs_sign_in):
        prepare_demo_window(window, desktop.data_dir)
        window.start()
    dialog = window.login_dialog
    assert dialog is not None
    check(dialog, language, "login", data, found)
    dialog.password.setText("wrong password")
    with qtbot.wait_signal(window.session.sign_in_failed, timeout=30_000):
        dialog.sign_in_button.click()
    qtbot.wait_until(lambda: bool(dialog.error.text()))
    check(dialog, language, "login refused", data, found)
    dialog.password.setText(backend.password)
    with qtbot.wait_signal(window.session.signed_in, timeout=30_000):
        dialog.sign_in_button.click()

    # The Broadcast tab with import errors, then a whole demo broadcast.
    panel = window.broadcast_panel
    qtbot.wait_until(lambda: panel.account.currentData() is not None)
    window.tabs.setCurrentWidget(panel)
    with qtbot.wait_signal(window.broadcast.imported):
        window.broadcast.import_text(PASTED)
    assert panel.import_errors.count() >= 7
    check(window, language, "broadcast import", data, found)
    prepare_demo_window(window, desktop.data_dir)
    qtbot.wait_until(lambda: len(window.broadcast.recipients) == 50)
    panel.opt_in.setChecked(True)
    with qtbot.wait_signal(window.broadcast.finished, timeout=120_000):
        panel.start_button.click()
    check(window, language, "broadcast finished", data, found)

    # Every other tab.
    for tab in (window.license_panel, window.accounts_panel):
        window.tabs.setCurrentWidget(tab)
        qtbot.wait(0)
        check(window, language, type(tab).__name__, data, found)
    window.tabs.setCurrentWidget(window.marketplace_tab)
    market = window.marketplace
    assert market is not None
    with qtbot.wait_signal(market.changed, timeout=30_000):
        window.marketplace_panel.refresh_button.click()  # type: ignore[union-attr]
    check(window, language, "marketplace", data, found)

    # Plans & billing, with a checkout opened and not paid yet (its state, note and invoice).
    window.tabs.setCurrentWidget(window.billing_tab)
    billing, billing_panel = window.billing, window.billing_panel
    assert billing is not None and billing_panel is not None
    qtbot.wait_until(lambda: billing.snapshot is not None, timeout=30_000)
    billing_panel.select_plan("basic")
    with qtbot.wait_signal(billing.changed, timeout=30_000):
        billing_panel.subscribe_button.click()
    assert opened and billing_panel.waiting.isVisible()
    check(window, language, "billing", data, found)
    # Points bought in the store, its page open and not paid yet (the products, the wait).
    with qtbot.wait_signal(billing.purchase_changed, timeout=30_000):
        assert billing.buy_points(DEMO_POINTS_PRODUCTS[0].id)
    assert billing_panel.points.buy_hint.isVisible()
    check(window, language, "points purchase", data, found)

    # Settings: a bad value is refused with the file, the key and the reason.
    window.tabs.setCurrentWidget(window.settings_panel)
    window.settings_panel.set_value(("broadcast", "batch_size"), "lots")
    with qtbot.wait_signal(window.settings.failed):
        window.settings_panel.save_button.click()
    check(window, language, "settings refused", data, found)

    # The session log, told in the window's language: its headings, levels and story lines.
    # Diagnostics written by libraries (no translation key) are shown as written, in English.
    window.tabs.setCurrentWidget(window.logs_panel)
    with qtbot.wait_signal(window.logs.log_loaded, timeout=30_000):
        window.logs.refresh()
    browser = window.logs_panel.browser
    browser.hide()  # checked below, row by row
    check(window, language, "logs", data, found)
    browser.show()
    shown = localize_log(session_log.path.read_text(encoding="utf-8"), window.translator)
    keyed = re.findall(r'<td class="message" data-key="([^"]*)"[^>]*>([^<]*)</td>', shown)
    assert {key for key, _text in keyed} >= {
        "log.sign_in_failed",
        "log.signed_in",
        "log.access",
        "log.broadcast_started",
        "log.broadcast_ended",
    }
    chrome = re.sub(r'<td class="(message|area|time)"[^>]*>[^<]*</td>', "", shown)
    chrome = re.sub(r"<style>.*?</style>|<title>.*?</title>", "", chrome, flags=re.S)
    for where, text in [("log chrome", chrome), *(("log: " + key, text) for key, text in keyed)]:
        runs = foreign(html.unescape(text), language, data=data)
        if runs:
            found.append(("logs", where, text[:200], ", ".join(runs)))

    # Help: the menu, About, and the notice of a newer release (its notes and names are data).
    release = manifest("9.0.0")
    backend.services.releases.publish("test", release)
    help_menu = install_updates(window, desktop.engine, core, window.translator, start=False)
    with qtbot.wait_signal(help_menu.updates.available, timeout=30_000):
        help_menu.check_action.trigger()
    release_data = [release.notes, *(d.name for d in release.downloads)]
    check(help_menu.notice, language, "update notice", [*data, *release_data], found)
    assert help_menu.notice.hint.text() in [t for _w, t in widget_texts(help_menu.notice)]
    help_menu.notice.close()
    help_menu.show_about()
    assert help_menu.answer is not None
    check(help_menu.answer, language, "about", data, found)
    help_menu.answer.close()
    window.tabs.setCurrentWidget(window.license_panel)
    check(window, language, "help menu", data, found)

    # Qt's own dialogs: a question's buttons and the file dialog.
    box = QMessageBox(
        QMessageBox.Icon.Question,
        "TGFlow",
        "?",
        QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
        window,
    )
    box.show()
    for button in box.findChildren(QDialogButtonBox):
        check(button, language, "message box", data, found)
    box.close()
    window.tabs.setCurrentWidget(panel)
    panel.import_file_button.click()  # the Broadcast tab's own file dialog, at the demo's folder
    files = panel.findChild(QFileDialog)
    assert files is not None
    qtbot.wait_exposed(files)
    check(files, language, "file dialog", [*data, "root"], found)
    files.close()

    report = "\n".join(" | ".join(item) for item in found)
    assert not found, f"text not in {language}:\n{report}"


def test_the_check_itself_tells_the_languages_apart() -> None:
    assert foreign("Отправлено 5 из 50", "ru") == []
    assert foreign("Sent 5 of 50", "ru") == ["Sent", "of"]
    assert foreign("Вход в Telegram по api_id и @SpamBot, файл CSV", "ru") == []
    assert foreign("Sent 5 of 50", "en") == []
    assert foreign("Отправлено", "en") != []
    assert foreign("Русский / English", "en") == []


def test_qt_dialog_buttons_follow_the_window_language(qtbot: QtBot) -> None:
    from app.i18n import QtTranslations

    translator = Translator("ru")
    holder = QWidget()
    qtbot.addWidget(holder)
    QtTranslations(translator, holder)
    buttons = QDialogButtonBox(
        QDialogButtonBox.StandardButton.Yes | QDialogButtonBox.StandardButton.Cancel
    )
    qtbot.addWidget(buttons)
    texts = {b.text().replace("&", "") for b in buttons.buttons()}
    assert texts == {"Да", "Отмена"}
    with qtbot.wait_signal(translator.language_changed):
        translator.set_language("en")
    fresh = QDialogButtonBox(
        QDialogButtonBox.StandardButton.Yes | QDialogButtonBox.StandardButton.Cancel
    )
    qtbot.addWidget(fresh)
    assert {b.text().replace("&", "") for b in fresh.buttons()} == {"Yes", "Cancel"}
    assert QApplication.instance() is not None


@pytest.mark.parametrize("language", ["ru", "en"])
def test_telegram_trouble_speaks_one_language(
    qtbot: QtBot, desktop: Desktop, tmp_path: Path, language: str
) -> None:
    """Telegram's refusals (a recipient's privacy, a block, a FloodWait, an error no rule knows,
    a restricted account, PeerFlood) reach the Accounts and Broadcast tabs in one language."""
    from app.transports.base import (
        FloodWait,
        PeerFlood,
        RecipientBlocked,
        RecipientUnavailable,
        TelegramRefused,
    )

    # One PeerFlood excludes (with the fake clock a cooldown would pass at once).
    core = desktop.make_core(pacing=DEMO_PACING, policy=FloodPolicy(max_consecutive_errors=1))
    desktop.sign_in()
    first = desktop.add_account("+15550000001")
    restricted = desktop.add_account("+15550000003")
    flooded = desktop.add_account("+15550000004")
    network = desktop.network
    network.script(first.account_id, RecipientUnavailable("x", "USER_PRIVACY_RESTRICTED"), at=2)
    network.script(first.account_id, RecipientBlocked("x", "USER_IS_BLOCKED"), at=3)
    network.script(first.account_id, RecipientUnavailable("x", "SOME_NEW_400"), at=4)
    network.script(first.account_id, FloodWait(5), at=5)
    network.script(first.account_id, TelegramRefused("SOME_NEW_ERROR"), at=7)
    network.restrict(restricted.account_id)
    network.script(flooded.account_id, PeerFlood(), at=1)
    for account in (restricted, flooded):
        broadcast_id = desktop.call(
            lambda a=account: core.create_broadcast(a.account_id, "Hi", ["@someone_1"])
        )
        desktop.run(core.run_broadcast(broadcast_id, Recorder()))

    window = MainWindow(
        desktop.engine,
        core,
        settings=Settings(),
        settings_path=tmp_path / "settings.ini",
        log_dir=tmp_path / "logs",
        translator=Translator(language),
    )
    qtbot.addWidget(window)
    window.resize(1200, 800)
    with qtbot.wait_signal(window.session.signed_in, timeout=30_000):
        window.start()
    panel = window.broadcast_panel
    window.tabs.setCurrentWidget(panel)
    qtbot.wait_until(lambda: panel.account.count() == 3)
    panel.account.setCurrentIndex(panel.account.findData(first.account_id))
    recipients = "\n".join(f"@trouble_{i:02d}" for i in range(10))
    with qtbot.wait_signal(window.broadcast.imported):
        window.broadcast.import_text(recipients)
    panel.message.setPlainText("Hi")
    panel.opt_in.setChecked(True)
    with qtbot.wait_signal(window.broadcast.finished, timeout=60_000) as finished:
        panel.start_button.click()
    assert str(finished.args[0].state) == "stopped"

    data = [desktop.backend.email, str(tmp_path), "Demo", "demo", "test desktop", "Hi"]
    found: list[tuple[str, ...]] = []
    check(window, language, "broadcast stopped", data, found)
    shown = [text for _where, text in widget_texts(window)]
    window.tabs.setCurrentWidget(window.accounts_panel)
    with qtbot.wait_signal(window.accounts.accounts_changed, timeout=30_000):
        window.accounts.refresh()
    for account in (first, restricted, flooded):
        window.accounts_panel.select(account.account_id)
        check(window, language, "accounts " + account.display_name, data, found)
        shown += [text for _where, text in widget_texts(window)]
    # The reasons are on screen, translated (not left out).
    expected = {
        "ru": [
            "получатель заблокировал аккаунт",
            "Telegram отказал (SOME_NEW_ERROR)",
            "ошибок подряд",
        ],
        "en": [
            "the recipient blocked the account",
            "Telegram refused (SOME_NEW_ERROR)",
            "consecutive errors",
        ],
    }
    for part in expected[language]:
        assert any(part in text for text in shown), part
    report = "\n".join(" | ".join(item) for item in found)
    assert not found, f"text not in {language}:\n{report}"


@pytest.mark.parametrize("language", ["ru", "en"])
def test_license_file_mode_speaks_one_language(
    qtbot: QtBot, desktop: Desktop, tmp_path: Path, language: str
) -> None:
    """The license-file dialog (with a refusal and its file chooser), the License panel in
    license-file mode (grace warning, a refused older file) and the deactivation question."""
    from datetime import timedelta

    from tests.helpers.desktop_license import KEY, license_text

    backend, now = desktop.backend, desktop.clock.now()
    window = MainWindow(
        desktop.engine,
        desktop.core,  # type: ignore[arg-type]
        settings=Settings(),
        settings_path=tmp_path / "settings.ini",
        log_dir=tmp_path / "logs",
        translator=Translator(language),
    )
    qtbot.addWidget(window)
    window.resize(1200, 800)
    data = [str(tmp_path), "TGFlow", "ООО Ромашка", "marketplace", "multi_account", "tgflow"]
    data += ["advanced", "TGF-…", KEY[-4:]]
    found: list[tuple[str, ...]] = []
    with qtbot.wait_signal(window.session.needs_sign_in):
        window.start()
    login = window.login_dialog
    assert login is not None
    check(login, language, "login", data, found)
    dialog = login.open_license_file()
    qtbot.wait_exposed(dialog)
    check(dialog, language, "license file dialog", data, found)
    chooser = dialog.choose_file()
    qtbot.wait_exposed(chooser)
    check(chooser, language, "license file chooser", [*data, "root"], found)
    chooser.close()

    old = tmp_path / "v1.lic"
    old.write_text(license_text(backend, now), encoding="utf-8")
    dialog.path.setText(str(old))
    dialog.key.setText("TGF-0000-0000-0000-0000")
    with qtbot.wait_signal(window.session.activation_failed):
        dialog.activate_button.click()
    check(dialog, language, "license file refused", data, found)
    grace = tmp_path / "v2.lic"
    grace.write_text(
        license_text(
            backend,
            now,
            file_version=2,
            valid_from=now - timedelta(days=400),
            valid_until=now - timedelta(days=1),
        ),
        encoding="utf-8",
    )
    dialog.path.setText(str(grace))
    dialog.key.setText(KEY)
    with qtbot.wait_signal(window.session.signed_in, timeout=30_000):
        dialog.activate_button.click()
    window.tabs.setCurrentWidget(window.license_panel)
    assert window.license_panel.file_box.grace.isVisible()
    # The license server does not manage this license: only the "not checked" line shows.
    assert window.license_panel.file_box.online.isVisible()
    with qtbot.wait_signal(window.license.failed, timeout=30_000):
        window.license.replace_file(old)
    check(window, language, "license panel, file mode", data, found)
    box = window.license_panel.file_box.ask_deactivate()
    qtbot.wait_exposed(box)
    check(box, language, "deactivate question", data, found)
    box.close()

    report = "\n".join(" | ".join(item) for item in found)
    assert not found, f"text not in {language}:\n{report}"
