"""Every Telegram error ends a batch properly: the real BroadcastWorker over the real backend
(HTTP) and the simulated Telegram (test_broadcast_kurigram.py does the same with kurigram's real
Client over a fake wire).

Each case asserts the same three things: the quota used is exactly what Telegram accepted
(nothing left held), the broadcast is not left "running", and the reason is there to read.
"""

from __future__ import annotations

import pytest

from app.antispam import AccountState, AccountStatus
from app.broadcast_store import BroadcastState, RecipientState
from app.transports.base import (
    AccountUnusable,
    FloodWait,
    LoginError,
    RecipientBlocked,
    RecipientUnavailable,
    SendTimeout,
    TelegramRefused,
    TextRejected,
)
from tests.helpers.broadcast import (
    PACING,
    POLICY,
    READERS,
    Recorder,
    account_status,
    assert_ended_properly,
    core_of,
    create,
    run,
)
from tests.helpers.desktop import Desktop

# --- the simulated Telegram --------------------------------------------------------------------


@pytest.fixture
def simulated(desktop: Desktop) -> tuple[Desktop, str]:
    desktop.make_core(pacing=PACING, policy=POLICY)
    desktop.sign_in()
    return desktop, desktop.add_account().account_id


def test_a_restricted_account_stops_and_is_excluded_with_the_reason(
    simulated: tuple[Desktop, str],
) -> None:
    desktop, account_id = simulated
    broadcast_id = create(desktop, account_id)
    recorder = Recorder()
    recorder.on_sent = lambda n: desktop.network.restrict(account_id) if n == 7 else None

    final = run(desktop, broadcast_id, recorder)

    assert final.state is BroadcastState.STOPPED
    assert "USER_RESTRICTED" in final.detail
    assert final.counts.sent == 7
    assert final.counts.pending == 5
    state, reason = account_status(desktop, account_id)
    assert state is AccountState.EXCLUDED
    assert "USER_RESTRICTED" in reason
    assert_ended_properly(desktop, final, broadcast_id)


def test_a_flood_wait_while_connecting_waits_exactly_then_sends(
    simulated: tuple[Desktop, str],
) -> None:
    desktop, account_id = simulated
    broadcast_id = create(desktop, account_id)
    desktop.network.script_connect(account_id, FloodWait(90))
    recorder = Recorder()

    final = run(desktop, broadcast_id, recorder)

    assert final.state is BroadcastState.FINISHED
    assert final.counts.sent == 12
    assert 90.0 in desktop.clock.sleeps
    waiting = [p for p in recorder.progress_events if p.state is BroadcastState.WAITING]
    assert waiting and "FloodWait 90 s" in waiting[0].detail
    assert_ended_properly(desktop, final, broadcast_id)


def test_a_timeout_while_connecting_stops_without_reserving(
    simulated: tuple[Desktop, str],
) -> None:
    desktop, account_id = simulated
    broadcast_id = create(desktop, account_id)
    desktop.network.script_connect(account_id, SendTimeout("no answer from Telegram"))

    final = run(desktop, broadcast_id)

    assert final.state is BroadcastState.STOPPED
    assert "connecting" in final.detail
    assert (final.counts.sent, final.counts.pending) == (0, 12)
    assert desktop.network.sent == []
    assert_ended_properly(desktop, final, broadcast_id)
    # Nothing is the account's fault: it stays Active, and the broadcast resumes.
    assert account_status(desktop, account_id)[0] is AccountState.ACTIVE
    resumed = run(desktop, broadcast_id)
    assert resumed.state is BroadcastState.FINISHED
    assert_ended_properly(desktop, resumed, broadcast_id)


def test_a_2fa_confirm_wait_cools_the_account_down_for_exactly_that_long(
    simulated: tuple[Desktop, str],
) -> None:
    desktop, account_id = simulated
    broadcast_id = create(desktop, account_id)
    desktop.network.script(account_id, FloodWait(3600, kind="2FA_CONFIRM_WAIT"), at=4)
    recorder = Recorder()
    seen: list[tuple[str, float]] = []
    core = core_of(desktop)

    def record(status: AccountStatus) -> None:
        if status.state is AccountState.COOLDOWN and status.until is not None:
            seen.append((status.reason, (status.until - desktop.clock.now()).total_seconds()))

    desktop.call(lambda: core.antispam.subscribe(record))
    final = run(desktop, broadcast_id, recorder)

    assert final.state is BroadcastState.FINISHED
    assert seen[0] == ("2FA_CONFIRM_WAIT 3600 s", 3600.0)
    assert 3600.0 in desktop.clock.sleeps
    assert_ended_properly(desktop, final, broadcast_id)


def test_a_refusal_no_rule_knows_stops_with_telegrams_reason(
    simulated: tuple[Desktop, str],
) -> None:
    desktop, account_id = simulated
    broadcast_id = create(desktop, account_id)
    desktop.network.script(account_id, TelegramRefused("SOMETHING_NEW"), at=3)

    final = run(desktop, broadcast_id)

    assert final.state is BroadcastState.STOPPED
    assert final.detail == "Telegram refused: SOMETHING_NEW"
    # Telegram refused it, so nothing went out: that recipient is still pending.
    assert (final.counts.sent, final.counts.failed, final.counts.pending) == (2, 0, 10)
    assert_ended_properly(desktop, final, broadcast_id)


def test_an_unknown_400_fails_that_recipient_and_the_broadcast_goes_on(
    simulated: tuple[Desktop, str],
) -> None:
    desktop, account_id = simulated
    broadcast_id = create(desktop, account_id)
    desktop.network.script(account_id, RecipientUnavailable(READERS[2], "BRAND_NEW"), at=3)
    desktop.network.script(account_id, RecipientBlocked(READERS[5], "USER_IS_BLOCKED"), at=6)
    recorder = Recorder()

    final = run(desktop, broadcast_id, recorder)

    assert final.state is BroadcastState.FINISHED
    assert (final.counts.sent, final.counts.failed) == (10, 2)
    failed = [(r, d) for r, s, d in recorder.recipients if s is RecipientState.FAILED]
    assert failed == [(READERS[2], "BRAND_NEW"), (READERS[5], "USER_IS_BLOCKED")]
    assert_ended_properly(desktop, final, broadcast_id)


def test_an_exception_no_transport_should_raise_still_ends_the_batch(
    simulated: tuple[Desktop, str],
) -> None:
    desktop, account_id = simulated
    broadcast_id = create(desktop, account_id)
    desktop.network.script(account_id, ValueError("Peer id invalid: 99"), at=8)

    final = run(desktop, broadcast_id)

    assert final.state is BroadcastState.STOPPED
    assert "ValueError: Peer id invalid: 99" in final.detail
    # Delivery unknown: failed, never re-sent; the batch's other 2 released.
    assert (final.counts.sent, final.counts.failed, final.counts.pending) == (7, 1, 4)
    assert_ended_properly(desktop, final, broadcast_id)


def test_a_text_longer_than_telegram_allows_is_refused_before_the_run(
    simulated: tuple[Desktop, str],
) -> None:
    desktop, account_id = simulated
    core = core_of(desktop)
    # 2049 emoji are 2049 code points but 4098 UTF-16 units: Telegram's measure.
    for text in ("x" * 4097, "\N{GRINNING FACE}" * 2049):
        with pytest.raises(TextRejected, match="MESSAGE_TOO_LONG"):
            desktop.call(lambda text=text: core.create_broadcast(account_id, text, READERS))
    assert desktop.call(core.broadcasts) == []
    # The longest text allowed is accepted.
    create(desktop, account_id, "x" * 4096)


def test_a_stored_text_too_long_stops_the_worker_before_anything_is_reserved(
    simulated: tuple[Desktop, str],
) -> None:
    desktop, account_id = simulated
    core = core_of(desktop)
    # As an older version could have stored it: straight into the store, past the check.
    broadcast_id = desktop.call(lambda: core.store.create(account_id, "y" * 5000, READERS))

    final = run(desktop, broadcast_id)

    assert final.state is BroadcastState.STOPPED
    assert "MESSAGE_TOO_LONG" in final.detail
    assert desktop.network.attempts == 0
    assert_ended_properly(desktop, final, broadcast_id)


@pytest.mark.parametrize(
    ("error", "message"),
    [
        (FloodWait(300), "wait 300 s"),
        (SendTimeout("no answer"), "no answer from Telegram"),
    ],
)
def test_flood_and_timeout_during_login_are_clear_login_errors(
    desktop: Desktop, error: Exception, message: str
) -> None:
    desktop.sign_in()
    core = core_of(desktop)
    desktop.network.script_login(error)  # type: ignore[arg-type]
    with pytest.raises(LoginError, match=message):
        desktop.run(core.add_account_start("+15550000001"))
    # The next attempt works.
    desktop.run(core.add_account_start("+15550000001"))
    desktop.network.script_login(error)  # type: ignore[arg-type]
    with pytest.raises(LoginError, match=message):
        desktop.run(core.add_account_code("12345"))
    assert desktop.run(core.add_account_code("12345")).info.account_id == "15550000001"


def test_a_flood_wait_met_asking_spambot_holds_for_the_account(
    simulated: tuple[Desktop, str],
) -> None:
    desktop, account_id = simulated
    core = core_of(desktop)
    desktop.network.script_connect(account_id, FloodWait(120))
    with pytest.raises(FloodWait):
        desktop.run(core.ask_spambot(account_id))
    state, reason = account_status(desktop, account_id)
    assert (state, reason) == (AccountState.COOLDOWN, "FloodWait 120 s")
    # A restriction met there excludes the account, as during a broadcast.
    desktop.network.restrict(account_id)
    with pytest.raises(AccountUnusable):
        desktop.run(core.ask_spambot(account_id))
    state, reason = account_status(desktop, account_id)
    assert state is AccountState.EXCLUDED
    assert "USER_RESTRICTED" in reason
