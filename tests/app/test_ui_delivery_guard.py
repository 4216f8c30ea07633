"""The Broadcast tab's guards: Start after a finished run asks before anyone gets the text a second
time, the table shows the run that is going on, and the suppression list is shown and edited."""

from __future__ import annotations

from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot

from tests.helpers.broadcast_tab import BroadcastTab, broadcast_tab
from tests.helpers.desktop import Desktop, quota_used

RECIPIENTS = [f"@opted_in_{i:03d}" for i in range(8)]


@pytest.fixture
def tab(qtbot: QtBot, desktop: Desktop) -> BroadcastTab:
    desktop.sign_in()
    desktop.add_account()
    assert desktop.core is not None
    return broadcast_tab(qtbot, desktop.engine, desktop.core, "en")


def import_list(qtbot: QtBot, t: BroadcastTab, lines: list[str]) -> None:
    t.panel.paste.setPlainText("\n".join(lines))
    with qtbot.wait_signal(t.session.imported):
        t.panel.import_text_button.click()
    t.panel.opt_in.setChecked(True)


def test_start_after_a_finished_run_asks_and_sends_only_to_the_rest(
    qtbot: QtBot, tab: BroadcastTab, desktop: Desktop
) -> None:
    t = tab
    import_list(qtbot, t, RECIPIENTS)
    t.panel.message.setPlainText("Hello")
    with qtbot.wait_signal(t.session.finished, timeout=60_000):
        t.panel.start_button.click()
    assert t.panel.table_model.counts() == {"sent": 8}
    assert len(desktop.network.sent) == 8

    # Start again, same list and text: nothing goes out, the user is asked.
    with (
        qtbot.assert_not_emitted(t.session.started),
        qtbot.wait_signal(t.session.repeat_found) as found,
    ):
        t.panel.start_button.click()
    assert len(found.args[0].already_received) == 8
    repeat = t.panel.repeat
    assert not repeat.isHidden()
    assert repeat.text.text().startswith("8 of 8 recipients already received this exact text")
    assert not repeat.rest_button.isEnabled()  # nobody else to send to
    assert repeat.again_button.text() == "Send again to all 8"
    repeat.cancel_button.click()
    assert repeat.isHidden() and len(desktop.network.sent) == 8

    # Two newcomers join the list: the safe default sends to them only.
    import_list(qtbot, t, [*RECIPIENTS, "@newcomer_one", "@newcomer_two"])
    with qtbot.wait_signal(t.session.repeat_found):
        t.panel.start_button.click()
    assert repeat.rest_button.text() == "Send only to the other 2"
    with qtbot.wait_signal(t.session.finished, timeout=60_000) as finished:
        repeat.rest_button.click()
    final = finished.args[0]
    assert (final.counts.sent, final.counts.skipped) == (2, 8)
    assert [m.recipient for m in desktop.network.sent[8:]] == ["@newcomer_one", "@newcomer_two"]
    # The table shows this run: eight skipped (and why), two sent.
    model = t.panel.table_model
    assert model.counts() == {"skipped": 8, "sent": 2}
    assert model.data(model.index(0, 3)) == "already received this text"
    assert t.panel.counters["skipped"].text() == "8"
    assert t.panel.counters["sent"].text() == "2"
    assert quota_used(desktop.backend) == (10, 0)


def test_the_explicit_send_again_starts_a_new_run_the_table_shows(
    qtbot: QtBot, tab: BroadcastTab, desktop: Desktop
) -> None:
    t = tab
    import_list(qtbot, t, RECIPIENTS[:3])
    t.panel.message.setPlainText("Hello")
    desktop.network.script(t.panel.account.currentData(), _unavailable(RECIPIENTS[0]), at=1)
    with qtbot.wait_signal(t.session.finished, timeout=60_000):
        t.panel.start_button.click()
    assert t.panel.table_model.counts() == {"failed": 1, "sent": 2}

    with qtbot.wait_signal(t.session.repeat_found):
        t.panel.start_button.click()
    started: list[str] = []
    t.session.started.connect(started.append)
    with qtbot.wait_signal(t.session.finished, timeout=60_000) as finished:
        t.panel.repeat.again_button.click()
    # A new broadcast, and its rows replaced the old run's (the failure is gone).
    assert started and started[0] == finished.args[0].broadcast_id
    assert t.panel.table_model.counts() == {"sent": 3}
    assert len(desktop.network.sent) == 2 + 3


def _unavailable(recipient: str) -> Exception:
    from app.transports.base import RecipientUnavailable

    return RecipientUnavailable(recipient, "USER_PRIVACY_RESTRICTED")


def test_the_suppression_list_is_shown_added_to_and_removed_from(
    qtbot: QtBot, tab: BroadcastTab, desktop: Desktop, tmp_path: Path
) -> None:
    t = tab
    box = t.panel.suppression
    vm = t.session.suppression
    assert box.title() == "Never send to (0)"

    box.entry.setText("@blocked_by_hand, hello!")
    with qtbot.wait_signal(vm.added) as added:
        box.add_button.click()
    assert added.args[0] == 1 and len(added.args[1]) == 1
    assert box.table.rowCount() == 1
    item = box.table.item(0, 0)
    reason = box.table.item(0, 1)
    assert item is not None and item.text() == "@blocked_by_hand"
    assert reason is not None and reason.text() == "added by you"
    assert box.message.text().startswith("Added to the list: 1.")
    assert box.title() == "Never send to (1)"

    # A CSV marking people opted out: they are not imported, and join the list.
    csv_file = tmp_path / "list.csv"
    csv_file.write_text(
        "username,opt_out\n@alice_smith,\n@bob_jones,yes\n@carol_white,0\n", encoding="utf-8"
    )
    with qtbot.wait_signal(vm.changed, timeout=30_000):
        t.panel.import_file(csv_file)
    assert t.session.recipients == ("@alice_smith", "@carol_white")
    assert "1 opted out" in t.panel.import_summary.text()
    shown = {box.table.item(r, 0).text(): box.table.item(r, 1).text() for r in range(2)}  # type: ignore[union-attr]
    assert shown == {"@blocked_by_hand": "added by you", "@bob_jones": "opted out"}

    # Remove the hand-made entry: select its row, press Remove.
    row = next(r for r in range(2) if box.table.item(r, 0).text() == "@blocked_by_hand")  # type: ignore[union-attr]
    assert not box.remove_button.isEnabled()
    box.table.selectRow(row)
    assert box.remove_button.isEnabled()
    with qtbot.wait_signal(vm.changed):
        box.remove_button.click()
    assert box.table.rowCount() == 1
    core = desktop.core
    assert core is not None
    assert [e.recipient for e in desktop.call(core.suppressed)] == ["@bob_jones"]


def test_rows_of_the_status_table_can_be_put_on_the_suppression_list(
    qtbot: QtBot, tab: BroadcastTab, desktop: Desktop
) -> None:
    t = tab
    import_list(qtbot, t, RECIPIENTS[:4])
    t.panel.table.selectRow(1)
    assert t.panel.selected_recipients() == [RECIPIENTS[1]]
    assert t.panel.suppress_action.text() == "Never send to the selected"
    with qtbot.wait_signal(t.session.suppression.changed):
        t.panel.suppress_action.trigger()
    assert t.panel.suppression.title() == "Never send to (1)"

    t.panel.message.setPlainText("Hello")
    with qtbot.wait_signal(t.session.finished, timeout=60_000):
        t.panel.start_button.click()
    assert sorted(m.recipient for m in desktop.network.sent) == sorted(
        set(RECIPIENTS[:4]) - {RECIPIENTS[1]}
    )
    assert t.panel.table_model.state_of(RECIPIENTS[1]) == "skipped"
    detail = t.panel.table_model.data(t.panel.table_model.index(1, 3))
    assert detail == "in the suppression list: added by you"
