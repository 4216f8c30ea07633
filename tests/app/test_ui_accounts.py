"""The Accounts panel: adding a simulated account (phone → code → password), the state badges
with their live countdown, restore, and @SpamBot."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from pytestqt.qtbot import QtBot

from app.core import AccountRow
from app.i18n import Translator
from app.ui.accounts_panel import AccountsPanel
from app.viewmodels.accounts import AccountsViewModel, AddStep
from tests.helpers.desktop import Desktop

TWO_STEP_PHONE = "+1 555 000 0012"  # the simulated network asks phones ending in 2 for "secret"
TWO_STEP_ID = "15550000012"


@pytest.fixture
def panel(qtbot: QtBot, desktop: Desktop) -> AccountsPanel:
    assert desktop.core is not None
    model = AccountsViewModel(desktop.engine, desktop.core, Translator("ru"))
    widget = AccountsPanel(model, model.translator)
    model.setParent(widget)
    qtbot.addWidget(widget)
    return widget


def vm(panel: AccountsPanel) -> AccountsViewModel:
    return panel._vm


def state_is(state: str) -> Callable[[list[AccountRow]], bool]:
    """For wait_signal: the (only) account has reached ``state``."""
    return lambda rows: bool(rows) and rows[0].status.state.value == state


def add_two_step_account(qtbot: QtBot, panel: AccountsPanel) -> None:
    model = vm(panel)
    panel.phone.setText(TWO_STEP_PHONE)
    with qtbot.wait_signal(model.code_requested):
        panel.send_code_button.click()
    assert panel.steps.currentIndex() == 1
    panel.code.setText("12345")
    with qtbot.wait_signal(model.password_requested) as asked:
        panel.code_button.click()
    assert asked.args == ["the usual one"]
    assert panel.steps.currentIndex() == 2
    assert panel.password_hint.text() == "Подсказка к паролю: the usual one"
    panel.password.setText("secret")
    with qtbot.wait_signal(model.account_added):
        panel.password_button.click()


def test_adding_an_account_through_code_and_password(
    qtbot: QtBot, panel: AccountsPanel, desktop: Desktop
) -> None:
    assert not panel.empty.isHidden() and panel.table.rowCount() == 0
    add_two_step_account(qtbot, panel)

    assert vm(panel).step == AddStep.IDLE
    assert panel.steps.currentIndex() == 0
    assert panel.table.rowCount() == 1
    name = panel.table.item(0, 0)
    assert name is not None and name.text() == "Demo 0012"
    badge = panel.badge(TWO_STEP_ID)
    assert badge is not None and badge.state == "active" and badge.text() == "Активен"
    assert panel.add_status.text() == "Аккаунт Demo 0012 добавлен."
    core = desktop.core
    assert core is not None
    assert [row.info.account_id for row in desktop.call(core.accounts)] == [TWO_STEP_ID]


def test_a_wrong_code_is_shown_and_the_wizard_stays_on_the_code(
    qtbot: QtBot, panel: AccountsPanel
) -> None:
    model = vm(panel)
    panel.phone.setText("+1 555 000 0001")
    with qtbot.wait_signal(model.code_requested):
        panel.send_code_button.click()
    panel.code.setText("00000")
    with (
        qtbot.assert_not_emitted(model.account_added),
        qtbot.wait_signal(model.add_failed) as failed,
    ):
        panel.code_button.click()
    assert failed.args == ["Telegram отклонил вход: неверный код"]
    assert not panel.add_error.isHidden() and panel.add_error.text() == failed.args[0]
    assert model.step == AddStep.CODE and panel.steps.currentIndex() == 1
    assert panel.table.rowCount() == 0


def test_the_badge_follows_cooldown_with_a_live_countdown_then_exclusion_and_restore(
    qtbot: QtBot, panel: AccountsPanel, desktop: Desktop
) -> None:
    add_two_step_account(qtbot, panel)
    core = desktop.core
    assert core is not None
    model = vm(panel)

    # AntiSpam reports on the engine thread; the view-model forwards it to the GUI.
    with qtbot.wait_signal(model.accounts_changed, check_params_cb=state_is("cooldown")):
        desktop.engine.call_soon(lambda: core.antispam.on_flood_wait(TWO_STEP_ID, 42))
    badge = panel.badge(TWO_STEP_ID)
    assert badge is not None
    assert badge.state == "cooldown"
    assert badge.text() == "Пауза · 42 с"
    reason = panel.table.item(0, 4)
    assert reason is not None and reason.text() == "FloodWait: пауза 42 с"

    desktop.clock.advance(30)
    panel.tick()  # what the once-a-second timer does
    assert badge.text() == "Пауза · 12 с"

    # Once the cooldown is over, the panel asks the core again and the account is Active.
    desktop.clock.advance(15)
    with qtbot.wait_signal(model.accounts_changed, check_params_cb=state_is("active")):
        panel.tick()
    assert badge.state == "active" and badge.text() == "Активен"

    with qtbot.wait_signal(model.accounts_changed, check_params_cb=state_is("excluded")):
        desktop.engine.call_soon(
            lambda: core.antispam.on_fatal(TWO_STEP_ID, "USER_DEACTIVATED_BAN")
        )
    assert badge.state == "excluded" and badge.text() == "Исключён"
    panel.select(TWO_STEP_ID)
    assert panel.reason.text() == "Причина: аккаунт заблокирован Telegram (USER_DEACTIVATED_BAN)"
    assert panel.restore_button.isEnabled() and not panel.exclude_button.isEnabled()

    with qtbot.wait_signal(model.accounts_changed, check_params_cb=state_is("active")):
        panel.restore_button.click()
    assert badge.state == "active"
    assert panel.reason.isHidden()
    assert desktop.call(lambda: core.antispam.status(TWO_STEP_ID).state.value) == "active"


def test_a_list_read_before_a_state_change_does_not_overwrite_it(
    qtbot: QtBot, panel: AccountsPanel, desktop: Desktop, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The list travels to the GUI a loop turn after it was read; a ban reported in between
    reaches the GUI first, and the older list must not turn the badge back to Active."""
    add_two_step_account(qtbot, panel)
    core = desktop.core
    assert core is not None
    model = vm(panel)
    read = core.accounts

    def read_then_banned() -> list[AccountRow]:
        rows = read()  # still Active here
        core.antispam.on_fatal(TWO_STEP_ID, "USER_DEACTIVATED_BAN")
        return rows

    monkeypatch.setattr(core, "accounts", read_then_banned)
    states: list[str] = []

    def second(rows: list[AccountRow]) -> bool:
        states.append(rows[0].status.state.value)
        return len(states) == 2  # the ban, then the older list

    with qtbot.wait_signal(model.accounts_changed, check_params_cb=second):
        model.refresh()
    assert states == ["excluded", "excluded"]
    badge = panel.badge(TWO_STEP_ID)
    assert badge is not None and badge.state == "excluded"


def test_exclude_by_hand_and_the_cooldown_timer_runs_only_while_needed(
    qtbot: QtBot, panel: AccountsPanel, desktop: Desktop
) -> None:
    add_two_step_account(qtbot, panel)
    core = desktop.core
    assert core is not None
    assert not panel._ticker.isActive()
    with qtbot.wait_signal(vm(panel).accounts_changed, check_params_cb=state_is("cooldown")):
        desktop.engine.call_soon(lambda: core.antispam.on_flood_wait(TWO_STEP_ID, 3600))
    assert panel._ticker.isActive()
    badge = panel.badge(TWO_STEP_ID)
    assert badge is not None and badge.text() == "Пауза · 1 ч 00 мин"
    panel.select(TWO_STEP_ID)
    with qtbot.wait_signal(vm(panel).accounts_changed, check_params_cb=state_is("excluded")):
        panel.exclude_button.click()
    assert badge.state == "excluded"
    assert not panel._ticker.isActive()
    status = desktop.call(lambda: core.antispam.status(TWO_STEP_ID))
    assert status.reason == "excluded by the user"  # stored in no language, shown in Russian:
    assert badge.toolTip() == "исключён пользователем" or "исключён пользователем" in (
        panel.reason.text()
    )


def test_check_with_spambot_shows_the_reply(
    qtbot: QtBot, panel: AccountsPanel, desktop: Desktop
) -> None:
    add_two_step_account(qtbot, panel)
    panel.select(TWO_STEP_ID)
    with qtbot.wait_signal(vm(panel).spambot_reply) as reply:
        panel.spambot_button.click()
    assert reply.args[0] == TWO_STEP_ID
    assert "no limits" in reply.args[1]
    text = panel.spambot_reply.toPlainText()
    assert text.startswith("Ответ @SpamBot для Demo 0012:")
    assert "free as a bird" in text


@pytest.mark.parametrize(
    ("language", "expected"),
    [
        ("ru", "Это не номер телефона: укажите его с кодом страны"),
        ("en", "That is not a phone number: write it with the country code"),
    ],
)
def test_a_malformed_phone_is_our_own_translated_message_not_telegrams(
    qtbot: QtBot, desktop: Desktop, language: str, expected: str
) -> None:
    assert desktop.core is not None
    model = AccountsViewModel(desktop.engine, desktop.core, Translator(language))
    widget = AccountsPanel(model, model.translator)
    model.setParent(widget)
    qtbot.addWidget(widget)
    widget.phone.setText("12345")
    with qtbot.wait_signal(model.add_failed) as failed:
        widget.send_code_button.click()
    message = failed.args[0]
    assert message.startswith(expected)
    assert "Telegram" not in message and "invalid phone number" not in message
    assert widget.add_error.text() == message
