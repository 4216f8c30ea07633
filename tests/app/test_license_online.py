"""License-file mode online, against the tests' real server: the machine is activated with the
license server once the file is activated, heartbeats (fired by the test's timer) bring a newer
version to the License panel and a revocation that blocks broadcasting, a lost server changes
nothing but the "last checked" line, and a refused activation is a message, not a failure."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import httpx
import pytest
from pytestqt.qtbot import QtBot

from agent.licensing.online import ACTIVATION_FILE_NAME
from app.core import LicenseUnusable
from app.i18n import Translator
from app.selftest import QuietObserver
from app.ui.main_window import MainWindow
from tests.helpers.activation import PortalLicense, activate_body, renew, set_status
from tests.helpers.desktop import Desktop
from tests.helpers.desktop_license import KEY, write_license
from tests.helpers.desktop_online import desktop_license, write_version
from tests.helpers.windows import main_window, open_login

TIMEOUT = 30_000


def _activate(qtbot: QtBot, window: MainWindow, path: Path, key: str) -> None:
    login = open_login(qtbot, window)
    login.license_file_button.click()
    dialog = login.license_file_dialog
    assert dialog is not None
    dialog.path.setText(str(path))
    dialog.key.setText(key)
    with qtbot.wait_signal(window.session.signed_in, timeout=TIMEOUT):
        dialog.activate_button.click()


def _online(qtbot: QtBot, desktop: Desktop, tmp_path: Path) -> tuple[MainWindow, PortalLicense]:
    """A window activated from the dialog with a file of a license the server knows, once the
    machine's online activation is done (the first heartbeat waits for the timer)."""
    lic = desktop_license(desktop.backend)
    path = write_version(tmp_path / "lic" / "v1.lic", desktop.backend, lic)
    window = main_window(qtbot, desktop, tmp_path)
    _activate(qtbot, window, path, lic.key)
    qtbot.waitUntil(lambda: desktop.timer.pending, timeout=TIMEOUT)
    box = window.license_panel.file_box
    qtbot.waitUntil(lambda: box.online.text().startswith("Последняя проверка"), timeout=TIMEOUT)
    return window, lic


def _story(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(record.getMessage() for record in caplog.records)


def test_activation_from_the_dialog_activates_online_and_heartbeats(
    qtbot: QtBot, desktop: Desktop, tmp_path: Path
) -> None:
    window, lic = _online(qtbot, desktop, tmp_path)
    kept = desktop.data_dir / ACTIVATION_FILE_NAME
    assert kept.exists() and lic.key in kept.read_text(encoding="utf-8")
    box = window.license_panel.file_box
    assert box.online.isVisible() and not box.online_refusal.isVisible()
    assert box.values["version"].text() == "1"
    # The server asks for its heartbeat interval; the next wait is that long.
    desktop.timer.fire()
    qtbot.waitUntil(
        lambda: len(desktop.timer.waits) == 2 and desktop.timer.pending, timeout=TIMEOUT
    )
    assert desktop.timer.waits == [300, 300]
    assert box.values["version"].text() == "1" and window.license.snapshot is not None
    assert window.license.snapshot.usable


def test_a_version_2_on_the_server_is_shown_after_the_next_heartbeat(
    qtbot: QtBot, desktop: Desktop, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tgflow")
    window, lic = _online(qtbot, desktop, tmp_path)
    assert renew(desktop.backend.services, lic.id) == 2
    with qtbot.wait_signal(window.license.replaced, timeout=TIMEOUT) as replaced:
        desktop.timer.fire()
    assert replaced.args == [2]
    box = window.license_panel.file_box
    assert box.values["version"].text() == "2"
    assert box.replaced.text() == Translator("ru").tr("license_file.replaced", version=2)
    assert "license server sent version 2 of the license file; it is active now" in _story(caplog)
    # A restart keeps version 2.
    assert desktop.core is not None
    assert desktop.core.license_files.check().file_version == 2


def test_a_revocation_reaches_the_desktop_at_its_next_heartbeat_and_blocks_broadcasting(
    qtbot: QtBot, desktop: Desktop, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tgflow")
    window, lic = _online(qtbot, desktop, tmp_path)
    core = desktop.core
    assert core is not None
    account = desktop.add_account()
    set_status(desktop.backend.services, lic.id, "revoked")
    panel = window.license_panel
    desktop.timer.fire()
    qtbot.waitUntil(lambda: panel.reason.isVisible(), timeout=TIMEOUT)
    revoked = Translator("ru").tr("license_file.refused.revoked")
    assert revoked in panel.reason.text()
    assert not panel.file_box.isVisible()
    assert window.license.snapshot is not None and not window.license.snapshot.usable
    assert not desktop.timer.pending  # the heartbeats ended
    assert "license server refused the license: The license has been revoked" in _story(caplog)
    broadcast_id = desktop.call(lambda: core.create_broadcast(account.account_id, "Hi", ["@a1"]))
    with pytest.raises(LicenseUnusable) as refused:
        desktop.run(core.run_broadcast(broadcast_id, QuietObserver()))
    assert refused.value.key == "license_file.refused.revoked"
    # The refusal is kept: a restart refuses the file without asking the server.
    desktop.backend.server.stop()
    desktop.close_core()
    desktop.make_core()
    again = main_window(qtbot, desktop, tmp_path)
    with qtbot.wait_signal(again.session.needs_sign_in, timeout=TIMEOUT):
        again.start()


def test_a_lost_server_shows_no_error_and_the_file_keeps_working(
    qtbot: QtBot, desktop: Desktop, tmp_path: Path
) -> None:
    window, _lic = _online(qtbot, desktop, tmp_path)
    box = window.license_panel.file_box
    checked = box.online.text()
    errors: list[str] = []
    window.license.failed.connect(errors.append)
    desktop.backend.server.stop()
    desktop.clock.advance(600)
    desktop.timer.fire()
    qtbot.waitUntil(
        lambda: len(desktop.timer.waits) == 2 and desktop.timer.pending, timeout=TIMEOUT
    )
    assert desktop.timer.waits[-1] == 300  # the default interval: try again later
    qtbot.wait(50)
    assert errors == []
    assert box.isVisible() and box.online.text() == checked
    assert not box.online_refusal.isVisible() and not window.license_panel.reason.isVisible()
    assert window.license.snapshot is not None and window.license.snapshot.usable


@pytest.mark.parametrize("language", ["ru", "en"])
def test_a_refused_online_activation_is_a_message_and_the_file_works_offline(
    qtbot: QtBot, desktop: Desktop, tmp_path: Path, language: str
) -> None:
    lic = desktop_license(desktop.backend, paid=False)
    path = write_version(tmp_path / "lic" / "v1.lic", desktop.backend, lic)
    window = main_window(qtbot, desktop, tmp_path, language=language)
    _activate(qtbot, window, path, lic.key)
    box = window.license_panel.file_box
    qtbot.waitUntil(lambda: box.online_refusal.isVisible(), timeout=TIMEOUT)
    tr = Translator(language)
    assert box.online_refusal.text() == tr.tr(
        "license_online.refused", reason=tr.tr("problem.license_inactive")
    )
    assert box.online.text() == tr.tr("license_online.never")
    assert "Traceback" not in box.online_refusal.text()
    assert window.license.snapshot is not None and window.license.snapshot.usable
    assert not desktop.timer.pending  # refused once: no heartbeats
    assert not (desktop.data_dir / ACTIVATION_FILE_NAME).exists()


def _take_over(desktop: Desktop, lic: PortalLicense) -> None:
    """Another machine activates in place of the desktop (its activation is freed)."""
    kept = json.loads((desktop.data_dir / ACTIVATION_FILE_NAME).read_text(encoding="utf-8"))
    body = activate_body(
        lic,
        domain="pc2.corp.example.com",
        product_version="0.5",
        modules=[],
        replace_activation_id=kept["activation_id"],
    )
    reply = httpx.post(desktop.backend.url + "/licenses/activate", json=body, timeout=30)
    assert reply.status_code == 200, reply.text


@pytest.mark.parametrize("slots", [1, 2])
def test_a_freed_activation_is_activated_again_once_and_a_refusal_says_why(
    qtbot: QtBot, desktop: Desktop, tmp_path: Path, slots: int
) -> None:
    lic = desktop_license(desktop.backend, max_activations=slots)
    path = write_version(tmp_path / "lic" / "v1.lic", desktop.backend, lic)
    window = main_window(qtbot, desktop, tmp_path)
    _activate(qtbot, window, path, lic.key)
    qtbot.waitUntil(lambda: desktop.timer.pending, timeout=TIMEOUT)
    first = json.loads((desktop.data_dir / ACTIVATION_FILE_NAME).read_text())["activation_id"]
    _take_over(desktop, lic)
    box = window.license_panel.file_box
    desktop.timer.fire()
    if slots == 1:
        # The other machine holds the only slot: the re-activation is refused, and said so.
        qtbot.waitUntil(box.online_refusal.isVisible, timeout=TIMEOUT)
        tr = Translator("ru")
        assert box.online_refusal.text() == tr.tr(
            "license_online.refused", reason=tr.tr("problem.device_limit")
        )
        assert not desktop.timer.pending
    else:
        qtbot.waitUntil(lambda: len(desktop.timer.waits) == 2, timeout=TIMEOUT)
        kept = json.loads((desktop.data_dir / ACTIVATION_FILE_NAME).read_text())
        assert kept["activation_id"] != first and not kept["must_reactivate"]
        assert not box.online_refusal.isVisible()
    # Either way the file keeps working offline.
    assert desktop.core is not None
    assert desktop.run(desktop.core.license_snapshot()).usable


def test_a_license_the_server_does_not_manage_stays_offline_without_a_message(
    qtbot: QtBot, desktop: Desktop, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tgflow")
    path = write_license(tmp_path / "lic" / "other.lic", desktop.backend, desktop.clock.now())
    window = main_window(qtbot, desktop, tmp_path)
    _activate(qtbot, window, path, KEY)
    qtbot.waitUntil(lambda: "does not manage this license" in _story(caplog), timeout=TIMEOUT)
    box = window.license_panel.file_box
    assert box.online.text() == Translator("ru").tr("license_online.never")
    assert not box.online_refusal.isVisible()
    assert not desktop.timer.pending and desktop.timer.waits == []
    assert not (desktop.data_dir / ACTIVATION_FILE_NAME).exists()


@pytest.mark.parametrize("language", ["ru", "en"])
def test_a_suspension_refuses_the_license_until_a_heartbeat_hears_it_lifted(
    qtbot: QtBot, desktop: Desktop, tmp_path: Path, language: str
) -> None:
    lic = desktop_license(desktop.backend)
    path = write_version(tmp_path / "lic" / "v1.lic", desktop.backend, lic)
    window = main_window(qtbot, desktop, tmp_path, language=language)
    _activate(qtbot, window, path, lic.key)
    qtbot.waitUntil(lambda: desktop.timer.pending, timeout=TIMEOUT)
    panel, tr = window.license_panel, Translator(language)
    set_status(desktop.backend.services, lic.id, "suspended")
    desktop.timer.fire()
    qtbot.waitUntil(panel.reason.isVisible, timeout=TIMEOUT)
    assert tr.tr("license_file.refused.suspended") in panel.reason.text()
    assert window.license.snapshot is not None and not window.license.snapshot.usable
    qtbot.waitUntil(lambda: desktop.timer.pending, timeout=TIMEOUT)  # still heartbeating
    set_status(desktop.backend.services, lic.id, "active")
    desktop.timer.fire()
    qtbot.waitUntil(lambda: not panel.reason.isVisible(), timeout=TIMEOUT)
    assert window.license.snapshot is not None and window.license.snapshot.usable
    assert panel.file_box.isVisible()
