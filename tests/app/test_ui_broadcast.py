"""The Broadcast panel over the simulated Telegram and the real backend: the opt-in gate, line-
numbered import errors, a short broadcast with live counters, notices, and the batched table."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from PyQt6.QtCore import QModelIndex
from pytestqt.qtbot import QtBot

from app.core_config import Pacing
from app.i18n import Translator
from app.transports.base import FloodWait
from app.ui.broadcast_panel import BroadcastPanel
from app.viewmodels.accounts import AccountsViewModel
from app.viewmodels.broadcast import BroadcastSession
from app.viewmodels.recipient_table import RecipientTableModel
from tests.helpers.broadcast import hold_after
from tests.helpers.broadcast_tab import broadcast_tab
from tests.helpers.desktop import Desktop, quota_used

RECIPIENTS = [f"@opted_in_{i:03d}" for i in range(24)]


@dataclass
class Setup:
    panel: BroadcastPanel
    session: BroadcastSession
    accounts: AccountsViewModel
    account_id: str


@pytest.fixture
def setup(qtbot: QtBot, desktop: Desktop) -> Setup:
    desktop.sign_in()
    account = desktop.add_account()
    assert desktop.core is not None
    tab = broadcast_tab(qtbot, desktop.engine, desktop.core, "ru")
    return Setup(tab.panel, tab.session, tab.accounts, account.account_id)


def paste_and_import(qtbot: QtBot, s: Setup, lines: list[str]) -> None:
    s.panel.paste.setPlainText("\n".join(lines))
    with qtbot.wait_signal(s.session.imported):
        s.panel.import_text_button.click()


def test_start_is_refused_without_the_opt_in_confirmation(
    qtbot: QtBot, setup: Setup, desktop: Desktop
) -> None:
    s = setup
    paste_and_import(qtbot, s, RECIPIENTS)
    s.panel.message.setPlainText("Hello")
    s.panel.select_account(s.account_id)
    assert not s.panel.opt_in.isChecked()

    with (
        qtbot.assert_not_emitted(s.session.started),
        qtbot.wait_signal(s.session.failed) as refused,
    ):
        s.panel.start_button.click()
    expected = (
        "Подтвердите, что эти получатели согласились получать сообщения: "
        "отметьте флажок под списком."
    )
    assert refused.args == [expected]
    assert not s.panel.error.isHidden() and s.panel.error.text() == expected
    assert not s.session.running
    core = desktop.core
    assert core is not None
    assert desktop.call(core.broadcasts) == []
    assert desktop.network.attempts == 0

    # Ticking the box clears the complaint; a new import clears the tick again.
    s.panel.opt_in.setChecked(True)
    assert s.session.opted_in and s.panel.error.isHidden()
    with qtbot.wait_signal(s.session.opt_in_changed) as changed:
        paste_and_import(qtbot, s, RECIPIENTS[:3])
    assert changed.args == [False]
    assert not s.panel.opt_in.isChecked() and not s.session.opted_in


def test_a_bad_csv_shows_line_numbered_errors_and_the_duplicates(
    qtbot: QtBot, setup: Setup, tmp_path: Path
) -> None:
    s = setup
    csv_file = tmp_path / "recipients.csv"
    csv_file.write_text(
        "username;name\n"  # line 1: the header
        "@alice_smith;Alice\n"
        "hello!;Bob\n"  # line 3: not a recipient
        "@alice_smith;Alice again\n"  # a duplicate
        ";Nobody\n"  # line 5: the column is empty
        "t.me/carol_jones;Carol\n",
        encoding="utf-8",
    )
    with qtbot.wait_signal(s.session.imported) as imported:
        s.panel.import_file(csv_file)
    result = imported.args[0]
    assert result.recipients == ("@alice_smith", "@carol_jones")
    assert result.duplicates == 1
    assert [p.line for p in result.errors] == [3, 5]

    errors = [s.panel.import_errors.item(i).text() for i in range(s.panel.import_errors.count())]  # type: ignore[union-attr]
    assert len(errors) == 2
    assert errors[0].startswith("строка 3: «hello!» — ")
    assert errors[1].startswith("строка 5: ")
    assert not s.panel.import_errors.isHidden()
    assert s.panel.import_summary.text() == (
        "Импортировано получателей: 2 · повторов отброшено: 1 · строк с ошибками: 2"
    )
    assert s.panel.table_model.rowCount() == 2


def test_a_missing_file_is_a_short_message(qtbot: QtBot, setup: Setup, tmp_path: Path) -> None:
    with qtbot.wait_signal(setup.session.import_failed) as failed:
        setup.panel.import_file(tmp_path / "nowhere.csv")
    message = failed.args[0]
    assert "nowhere.csv" in message and "Traceback" not in message
    assert setup.panel.error.text() == message


def test_a_short_broadcast_finishes_with_matching_counters(
    qtbot: QtBot, setup: Setup, desktop: Desktop
) -> None:
    s = setup
    recipients = [*RECIPIENTS, "@unknown_person"]  # the simulated network does not know it
    paste_and_import(qtbot, s, recipients)
    s.panel.opt_in.setChecked(True)
    s.panel.message.setPlainText("Добрый день! Вебинар в четверг.")
    assert s.panel.preview.text() == "Добрый день! Вебинар в четверг."
    s.panel.select_account(s.account_id)
    progress_seen: list[object] = []
    s.session.progress.connect(progress_seen.append)

    with qtbot.wait_signal(s.session.finished, timeout=60_000) as finished:
        # The start first asks the engine about earlier deliveries; the run begins on its answer.
        with qtbot.wait_signal(s.session.state_changed):
            s.panel.start_button.click()
        assert s.session.running
        assert not s.panel.start_button.isEnabled() and s.panel.stop_button.isEnabled()

    final = finished.args[0]
    assert (final.counts.sent, final.counts.failed, final.counts.pending) == (24, 1, 0)
    assert str(final.state) == "finished"
    assert s.panel.counters["sent"].text() == "24"
    assert s.panel.counters["failed"].text() == "1"
    assert s.panel.counters["pending"].text() == "0"
    assert s.panel.counters["quota"].text() == "976"
    assert s.panel.progress_bar.value() == 25 and s.panel.progress_bar.maximum() == 25
    assert s.panel.state.text() == "Завершена."
    assert s.panel.table_model.counts() == {"sent": 24, "failed": 1}
    assert s.panel.table_model.state_of("@unknown_person") == "failed"
    assert s.panel.start_button.isEnabled() and not s.panel.stop_button.isEnabled()
    # What the panel shows is what happened: the network and the server agree.
    assert len(desktop.network.sent) == 24
    assert quota_used(desktop.backend) == (24, 0)
    # Progress reached the GUI coalesced, not once per message.
    assert 1 <= len(progress_seen) < 25


def test_a_flood_wait_is_announced_and_waited_exactly(
    qtbot: QtBot, setup: Setup, desktop: Desktop
) -> None:
    s = setup
    paste_and_import(qtbot, s, RECIPIENTS[:6])
    s.panel.opt_in.setChecked(True)
    s.panel.message.setPlainText("Hello")
    desktop.network.script(s.account_id, FloodWait(42), at=3)
    notices: list[tuple[str, str]] = []
    s.session.notice.connect(lambda kind, text: notices.append((kind, text)))
    with qtbot.wait_signal(s.session.finished, timeout=60_000):
        s.panel.start_button.click()
    assert notices == [("flood_wait", "FloodWait: ждём 42 с, как просил Telegram")]
    assert 42.0 in desktop.clock.sleeps
    first = s.panel.notices.item(s.panel.notices.count() - 1)
    assert first is not None and first.text().endswith("FloodWait: ждём 42 с, как просил Telegram")
    assert s.panel.counters["sent"].text() == "6"


def test_stop_leaves_the_rest_pending_and_continue_finishes_it(
    qtbot: QtBot, setup: Setup, desktop: Desktop, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = setup
    network = desktop.network
    # The fourth message waits (on the engine) until the test has pressed Stop.
    hold = hold_after(desktop, monkeypatch, 3)
    paste_and_import(qtbot, s, RECIPIENTS)
    s.panel.opt_in.setChecked(True)
    s.panel.message.setPlainText("Hello")
    with qtbot.wait_signal(s.session.finished, timeout=60_000) as finished:
        s.panel.start_button.click()
        qtbot.wait_until(lambda: hold.held.is_set() and s.session.broadcast_id is not None)
        s.panel.stop_button.click()
        desktop.engine.call_soon(hold.gate.set)  # after the stop request, on the same loop
    stopped = finished.args[0]
    assert str(stopped.state) == "stopped"
    # The message in flight went out; nothing after it.
    assert (stopped.counts.sent, stopped.counts.pending) == (4, 20)
    assert s.panel.state.text() == "Остановлена: остановлена вами."
    assert s.panel.counters["pending"].text() == "20"
    assert quota_used(desktop.backend) == (4, 0)

    with qtbot.wait_signal(s.session.broadcasts_changed):
        s.session.refresh_broadcasts()
    assert s.panel.earlier.currentData() == stopped.broadcast_id
    assert s.panel.continue_button.isEnabled()
    with qtbot.wait_signal(s.session.finished, timeout=60_000) as done:
        s.panel.continue_button.click()
    assert (done.args[0].counts.sent, done.args[0].counts.pending) == (24, 0)
    assert s.panel.table_model.counts() == {"sent": 24}
    assert quota_used(desktop.backend) == (24, 0)
    assert len(network.sent) == 24  # nobody got the message twice


def test_ten_thousand_rows_update_in_one_batch_without_a_reset(qtbot: QtBot) -> None:
    model = RecipientTableModel(Translator("en"))
    names = [f"@user_{i:05d}" for i in range(10_000)]
    model.set_recipients(names)
    assert model.rowCount() == 10_000
    changed: list[tuple[QModelIndex, QModelIndex]] = []
    model.dataChanged.connect(lambda top, bottom, _roles=(): changed.append((top, bottom)))
    with qtbot.assert_not_emitted(model.modelReset):
        applied = model.apply([(n, "sent", "") for n in names[100:600]])
    assert applied == 500
    assert len(changed) == 1
    top, bottom = changed[0]
    assert (top.row(), bottom.row()) == (100, 599)
    assert model.data(model.index(100, 2)) == "sent"
    assert model.data(model.index(99, 2)) == "—"
    assert model.apply([("@not_in_the_list", "sent", "")]) == 0


def test_a_text_over_telegrams_limit_is_refused_as_telegram_counts_it(
    qtbot: QtBot, setup: Setup, desktop: Desktop
) -> None:
    s = setup
    paste_and_import(qtbot, s, RECIPIENTS)
    s.panel.select_account(s.account_id)
    s.panel.opt_in.setChecked(True)
    # 2049 emoji: 2049 code points, 4098 UTF-16 code units (Telegram's measure).
    s.panel.message.setPlainText("\N{GRINNING FACE}" * 2049)
    assert s.panel.char_count.text() == "4098 / 4096 символов"

    with (
        qtbot.assert_not_emitted(s.session.started),
        qtbot.wait_signal(s.session.failed) as refused,
    ):
        s.panel.start_button.click()
    assert refused.args == ["В сообщении 4098 символов; Telegram допускает 4096."]
    core = desktop.core
    assert core is not None
    assert desktop.call(core.broadcasts) == []

    # The preview is the text exactly as it will arrive: no Markdown or HTML made of it.
    typed = "2*3 **today** __init__ <b>x</b>"
    s.panel.message.setPlainText(typed)
    assert s.panel.preview.text() == typed
    assert s.panel.char_count.text() == f"{len(typed)} / 4096 символов"


@pytest.mark.parametrize(
    ("detail", "russian", "english"),
    [
        (
            "no answer from Telegram while connecting (TimeoutError)",
            "Telegram не ответил при подключении (TimeoutError); продолжите позже",
            "Telegram did not answer while connecting (TimeoutError); continue later",
        ),
        (
            "Telegram refused: SOMETHING_NEW",
            "Telegram отказал (SOMETHING_NEW); рассылку можно продолжить позже",
            "Telegram refused (SOMETHING_NEW); you can continue later",
        ),
        (
            "text refused: MESSAGE_TOO_LONG: Telegram refuses this text",
            # Telegram's error id in the window's words (app/viewmodels/telegram_text.py).
            "Telegram не принимает этот текст "
            "(сообщение длиннее, чем позволяет Telegram (MESSAGE_TOO_LONG))",
            "Telegram does not accept this text "
            "(the message is longer than Telegram allows (MESSAGE_TOO_LONG))",
        ),
        (
            "unexpected error: ValueError: a bug",
            "непредвиденная ошибка (ValueError: a bug); подробности в журнале",
            "unexpected error (ValueError: a bug); details are in the log",
        ),
    ],
)
def test_the_new_stop_reasons_read_in_the_windows_language(
    desktop: Desktop, detail: str, russian: str, english: str
) -> None:
    core = desktop.core
    assert core is not None
    for language, expected in (("ru", russian), ("en", english)):
        session = BroadcastSession(desktop.engine, core, Translator(language))
        assert session.describe_reason(detail) == expected


def test_the_pacing_line_names_the_demo_pacing_when_the_demo_uses_it(
    qtbot: QtBot, setup: Setup, desktop: Desktop
) -> None:
    # Outside the demo the pacing comes from settings.ini, and the line says where.
    assert "(Настройки → [broadcast])" in setup.panel.pacing.text()

    core = desktop.core
    assert core is not None
    core.config = replace(
        core.config, pacing=Pacing(min_delay_sec=0.2, max_delay_sec=0.6), demo_pacing=True
    )
    demo = broadcast_tab(qtbot, desktop.engine, core, "ru").panel
    text = demo.pacing.text()
    assert text.startswith("пауза 0.2–0.6 с между сообщениями")
    assert "демо-темп" in text and "(Настройки → [broadcast])" not in text
