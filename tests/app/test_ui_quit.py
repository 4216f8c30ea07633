"""Quitting while a broadcast runs: asked first, and on yes the broadcast is stopped properly."""

from __future__ import annotations

from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot

from tests.helpers.broadcast import hold_after
from tests.helpers.desktop import Desktop, quota_used
from tests.helpers.windows import main_window

RECIPIENTS = [f"@opted_in_{i:03d}" for i in range(12)]


def test_quitting_mid_broadcast_asks_and_stops_it_properly(
    qtbot: QtBot, desktop: Desktop, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    desktop.sign_in()
    account = desktop.add_account()
    hold = hold_after(desktop, monkeypatch, 3)  # the fourth message waits on the engine
    window = main_window(qtbot, desktop, tmp_path)
    window.show()
    session = window.broadcast
    with qtbot.wait_signal(session.imported):
        session.import_text("\n".join(RECIPIENTS))
    session.set_opted_in(True)
    assert session.start(account.account_id, "Hello")
    qtbot.wait_until(lambda: hold.held.is_set() and session.broadcast_id is not None)

    # Closing asks, in the window's language, and "keep sending" keeps it running.
    window.quit_action.trigger()
    box = window.quit_confirm
    assert box is not None and box.isVisible()
    assert window.isVisible()
    assert box.text() == "Рассылка ещё идёт."
    keep = [b for b in box.buttons() if b.text() == "Продолжить рассылку"]
    keep[0].click()
    assert window.isVisible() and session.running

    window.close()
    assert box.isVisible()
    stop = [b for b in box.buttons() if b.text() == "Остановить и выйти"]
    with qtbot.wait_signal(session.finished, timeout=60_000) as finished:
        stop[0].click()
        assert window.isVisible()  # until the worker has committed and released
        desktop.engine.call_soon(hold.gate.set)
    qtbot.wait_until(lambda: not window.isVisible())
    stopped = finished.args[0]
    assert str(stopped.state) == "stopped"
    assert (stopped.counts.sent, stopped.counts.pending) == (4, 8)
    assert quota_used(desktop.backend) == (4, 0)  # sent committed, the rest released


def test_quitting_without_a_broadcast_asks_nothing(
    qtbot: QtBot, desktop: Desktop, tmp_path: Path
) -> None:
    window = main_window(qtbot, desktop, tmp_path)
    window.show()
    window.quit_action.trigger()
    assert window.quit_confirm is None
    assert not window.isVisible()
