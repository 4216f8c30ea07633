"""The update notice in the window, against the real reference backend (docs/updates.md):
Help → Check for updates shows a published newer release with its link and SHA-256; the
automatic check asks at most once a day (the desktop's fake clock); "up to date" when nothing is
newer; a manifest signed by a key that is not pinned is ignored and said so."""

from __future__ import annotations

from pathlib import Path

from pytestqt.qtbot import QtBot

from agent.updates import current_platform
from app.ui.update_notice import HelpMenu, install_updates
from tests.helpers.desktop import Desktop
from tests.helpers.releases import SHA256, manifest
from tests.helpers.windows import main_window


def help_menu(qtbot: QtBot, desktop: Desktop, tmp_path: Path, language: str = "en") -> HelpMenu:
    window = main_window(qtbot, desktop, tmp_path, language=language)
    assert desktop.core is not None
    return install_updates(window, desktop.engine, desktop.core, window.translator, start=False)


def test_help_check_for_updates_shows_a_newer_release(
    qtbot: QtBot, desktop: Desktop, tmp_path: Path
) -> None:
    desktop.backend.services.releases.publish("test", manifest("9.0.0"))
    menu = help_menu(qtbot, desktop, tmp_path)
    assert [a.text() for a in menu.menu.actions() if a.text()] == [
        "Check for &updates…",
        "&About TGFlow",
    ]
    with qtbot.wait_signal(menu.updates.available, timeout=30_000):
        menu.check_action.trigger()
    notice = menu.notice
    assert notice.isVisible()
    assert "TGFlow 9.0.0 is available" in notice.heading.text()
    assert "2026-11-30" in notice.released.text() and "0.1.0" in notice.released.text()
    assert notice.notes.text() == "Fixed: a faster start."
    text = notice.downloads.text()
    assert SHA256 in text and "123.5 MB" in text
    # This machine's archive only (the test machine is a Linux one).
    assert current_platform() == "linux-x86_64"
    assert "tgflow-9.0.0-linux-x86_64.tar.gz" in text and "windows" not in text
    assert 'href="https://downloads.example.com/tgflow/9.0.0/' in text
    # The language switch relabels the open notice.
    menu.updates.translator.set_language("ru")
    assert "Доступна версия TGFlow 9.0.0" in notice.heading.text()
    assert "123,5 МБ" in notice.downloads.text()


def test_the_automatic_check_asks_at_most_once_a_day(
    qtbot: QtBot, desktop: Desktop, tmp_path: Path
) -> None:
    desktop.backend.services.releases.publish("test", manifest("9.0.0"))
    menu = help_menu(qtbot, desktop, tmp_path)
    updates = menu.updates
    with qtbot.wait_signal(updates.checked, timeout=30_000) as first:
        updates.start()
    assert first.args is not None and first.args[0].asked
    assert menu.notice.isVisible()
    menu.notice.close()
    # An hour later the timer wakes: not due, nothing asked, the dismissed notice stays closed.
    desktop.clock.advance(3600)
    with qtbot.wait_signal(updates.checked, timeout=30_000) as quiet:
        updates.check(manual=False)
    assert quiet.args is not None and not quiet.args[0].asked
    assert not menu.notice.isVisible()
    # A day after the first check it asks again and tells again.
    desktop.clock.advance(23 * 3600)
    with qtbot.wait_signal(updates.available, timeout=30_000):
        updates.check(manual=False)
    assert menu.notice.isVisible()


def test_up_to_date_and_an_unpinned_manifest(
    qtbot: QtBot, desktop: Desktop, tmp_path: Path
) -> None:
    menu = help_menu(qtbot, desktop, tmp_path)
    with qtbot.wait_signal(menu.updates.up_to_date, timeout=30_000):
        menu.check_action.trigger()  # nothing published: a 404, so nothing newer
    assert menu.answer is not None and menu.answer.isVisible()
    assert "newest version of TGFlow (0.1.0)" in menu.answer.text()
    menu.answer.close()

    # A desktop that pins only the auth key: the license key's signature is not trusted.
    desktop.close_core()
    backend = desktop.backend
    auth_pin = backend.services.ctx.keys.signing_key("auth").pin
    desktop.make_core(pins=(auth_pin,))
    backend.services.releases.publish("test", manifest("9.0.0"))
    wary = help_menu(qtbot, desktop, tmp_path / "wary")
    with qtbot.wait_signal(wary.updates.failed, timeout=30_000) as failed:
        wary.check_action.trigger()
    assert failed.args is not None and "signature check" in failed.args[0]
    assert not wary.notice.isVisible() and wary.updates.notice is None
