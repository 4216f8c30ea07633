"""Every Telegram error ends a batch properly: the real BroadcastWorker over the real backend
(HTTP), with the simulated Telegram and with kurigram's real Client over a fake wire.

Each case asserts the same three things: the quota used is exactly what Telegram accepted
(nothing left held), the broadcast is not left "running", and the reason is there to read.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from pyrogram import raw

from app.antispam import AccountState, AccountStatus, FloodPolicy
from app.broadcast import Pacing, Progress
from app.broadcast_store import BroadcastState, RecipientState
from app.core import Core
from app.transports.base import (
    FloodWait,
    LoginError,
    RecipientBlocked,
    RecipientUnavailable,
    SendTimeout,
    TelegramRefused,
    TextRejected,
)
from app.transports.pyrogram_transport import PyrogramTransportFactory
from tests.app.conftest import Desktop, quota_used
from tests.helpers.broadcast_recorder import Recorder
from tests.helpers.kurigram_wire import LOGIN_CODE, Wire, install, user

RECIPIENTS = [f"@reader_{i:03d}" for i in range(12)]
PACING = Pacing(min_delay_sec=2, max_delay_sec=2, batch_size=5)
POLICY = FloodPolicy(max_consecutive_errors=3, cooldown_sec=300)


def core_of(desktop: Desktop) -> Core:
    assert desktop.core is not None
    return desktop.core


def create(desktop: Desktop, account_id: str, text: str = "Hello from TGFlow") -> str:
    core = core_of(desktop)
    return desktop.call(lambda: core.create_broadcast(account_id, text, RECIPIENTS))


def run(desktop: Desktop, broadcast_id: str, recorder: Recorder | None = None) -> Progress:
    core = core_of(desktop)
    return desktop.run(core.run_broadcast(broadcast_id, recorder or Recorder()))


def assert_ended_properly(desktop: Desktop, final: Progress, broadcast_id: str) -> None:
    """Quota exact, nothing held, and neither the run nor the store says "running"."""
    core = core_of(desktop)
    stored = desktop.call(lambda: core.broadcast(broadcast_id))
    assert final.state is not BroadcastState.RUNNING
    assert stored.state is not BroadcastState.RUNNING
    assert quota_used(desktop.backend) == (final.counts.sent, 0)
    if final.state is BroadcastState.STOPPED:
        assert final.detail  # a reason to read


def account_status(desktop: Desktop, account_id: str) -> tuple[AccountState, str]:
    core = core_of(desktop)
    status = desktop.call(lambda: core.antispam.status(account_id))
    return status.state, status.reason


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
    assert final.detail == "SOMETHING_NEW"
    # Telegram refused it, so nothing went out: that recipient is still pending.
    assert (final.counts.sent, final.counts.failed, final.counts.pending) == (2, 0, 10)
    assert_ended_properly(desktop, final, broadcast_id)


def test_an_unknown_400_fails_that_recipient_and_the_broadcast_goes_on(
    simulated: tuple[Desktop, str],
) -> None:
    desktop, account_id = simulated
    broadcast_id = create(desktop, account_id)
    desktop.network.script(account_id, RecipientUnavailable(RECIPIENTS[2], "BRAND_NEW"), at=3)
    desktop.network.script(account_id, RecipientBlocked(RECIPIENTS[5], "USER_IS_BLOCKED"), at=6)
    recorder = Recorder()

    final = run(desktop, broadcast_id, recorder)

    assert final.state is BroadcastState.FINISHED
    assert (final.counts.sent, final.counts.failed) == (10, 2)
    failed = [(r, d) for r, s, d in recorder.recipients if s is RecipientState.FAILED]
    assert failed == [(RECIPIENTS[2], "BRAND_NEW"), (RECIPIENTS[5], "USER_IS_BLOCKED")]
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
            desktop.call(lambda text=text: core.create_broadcast(account_id, text, RECIPIENTS))
    assert desktop.call(core.broadcasts) == []
    # The longest text allowed is accepted.
    create(desktop, account_id, "x" * 4096)


def test_a_stored_text_too_long_stops_the_worker_before_anything_is_reserved(
    simulated: tuple[Desktop, str],
) -> None:
    desktop, account_id = simulated
    core = core_of(desktop)
    # As an older version could have stored it: straight into the store, past the check.
    broadcast_id = desktop.call(lambda: core.store.create(account_id, "y" * 5000, RECIPIENTS))

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


# --- kurigram's real Client over a fake wire ---------------------------------------------------


@pytest.fixture
def kurigram(
    desktop: Desktop, monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Desktop, Wire, str]:
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))  # kurigram's ./unknown_errors.txt
    wire = Wire()
    wire.users.extend(user(5000 + i, username=name[1:]) for i, name in enumerate(RECIPIENTS))
    install(monkeypatch, wire)
    factory = PyrogramTransportFactory(
        12345, "0123456789abcdef", desktop.data_dir / "sessions", clock=desktop.clock
    )
    desktop.close_core()
    desktop.make_core(pacing=PACING, policy=POLICY, transports=factory)
    desktop.sign_in()
    core = core_of(desktop)
    desktop.run(core.add_account_start("+15550000001"))
    account_id = desktop.run(core.add_account_code(LOGIN_CODE)).info.account_id
    return desktop, wire, account_id


SEND = raw.functions.messages.SendMessage
DONE, STOPPED = BroadcastState.FINISHED, BroadcastState.STOPPED
ACTIVE, EXCLUDED = AccountState.ACTIVE, AccountState.EXCLUDED


@pytest.mark.parametrize(
    ("code", "error", "state", "sent", "account", "detail"),
    [
        (420, "FLOOD_WAIT_42", DONE, 12, ACTIVE, ""),
        (420, "SLOWMODE_WAIT_42", DONE, 12, ACTIVE, ""),
        (420, "FLOOD_PREMIUM_WAIT_42", DONE, 12, ACTIVE, ""),
        (420, "2FA_CONFIRM_WAIT_42", DONE, 12, ACTIVE, ""),
        (
            403,
            "USER_RESTRICTED",
            STOPPED,
            6,
            EXCLUDED,
            "USER_RESTRICTED",
        ),
        (
            406,
            "USER_RESTRICTED",
            STOPPED,
            6,
            EXCLUDED,
            "USER_RESTRICTED",
        ),
        (
            400,
            "USER_BANNED_IN_CHANNEL",
            STOPPED,
            6,
            EXCLUDED,
            "USER_BANNED_IN_CHANNEL",
        ),
        (
            400,
            "MESSAGE_TOO_LONG",
            STOPPED,
            6,
            ACTIVE,
            "MESSAGE_TOO_LONG",
        ),
        (400, "BRAND_NEW_THING", DONE, 11, ACTIVE, ""),
        (403, "USER_IS_BLOCKED", DONE, 11, ACTIVE, ""),
        (403, "BRAND_NEW_THING", STOPPED, 6, ACTIVE, "BRAND_NEW_THING"),
        (
            401,
            "SESSION_REVOKED",
            STOPPED,
            6,
            EXCLUDED,
            "SESSION_REVOKED",
        ),
    ],
)
def test_each_kurigram_error_of_a_send_ends_the_batch_properly(
    kurigram: tuple[Desktop, Wire, str],
    code: int,
    error: str,
    state: BroadcastState,
    sent: int,
    account: AccountState,
    detail: str,
) -> None:
    desktop, wire, account_id = kurigram
    broadcast_id = create(desktop, account_id)
    wire.fail(SEND, error, code, at=7)  # the 2nd message of the 2nd batch

    final = run(desktop, broadcast_id)

    assert final.state is state
    assert final.counts.sent == sent == len(wire.sent())
    assert detail in final.detail
    assert account_status(desktop, account_id)[0] is account
    if account is AccountState.EXCLUDED:
        assert error in account_status(desktop, account_id)[1]
    if code == 420:
        assert 42.0 in desktop.clock.sleeps  # waited on our clock, exactly
        assert wire.sleeps == []  # never inside kurigram
    assert_ended_properly(desktop, final, broadcast_id)


@pytest.mark.parametrize(
    ("failure", "state", "detail"),
    [
        (
            raw.types.RpcError(error_code=420, error_message="FLOOD_WAIT_77"),
            BroadcastState.FINISHED,
            "",
        ),
        (
            raw.types.RpcError(error_code=403, error_message="USER_RESTRICTED"),
            BroadcastState.STOPPED,
            "USER_RESTRICTED",
        ),
        (TimeoutError("Request timed out"), BroadcastState.STOPPED, "connecting"),
        (ValueError("a bug"), BroadcastState.STOPPED, "ValueError: a bug"),
    ],
)
def test_each_kurigram_error_while_connecting_ends_properly(
    kurigram: tuple[Desktop, Wire, str],
    failure: object,
    state: BroadcastState,
    detail: str,
) -> None:
    desktop, wire, account_id = kurigram
    broadcast_id = create(desktop, account_id)
    get_me = raw.functions.users.GetFullUser
    if isinstance(failure, raw.types.RpcError):
        wire.fail(get_me, failure.error_message, failure.error_code)
    else:
        assert isinstance(failure, BaseException)
        # kurigram retries a timed-out request itself; each retry times out too.
        for _ in range(10 if isinstance(failure, TimeoutError) else 1):
            wire.fail(get_me, failure)

    final = run(desktop, broadcast_id)

    assert final.state is state
    assert detail in final.detail
    if state is BroadcastState.FINISHED:
        assert 77.0 in desktop.clock.sleeps
        assert len(wire.sent()) == 12
    else:
        assert wire.sent() == []
    assert_ended_properly(desktop, final, broadcast_id)


def test_the_text_reaches_the_wire_as_typed_through_the_worker(
    kurigram: tuple[Desktop, Wire, str],
) -> None:
    desktop, wire, account_id = kurigram
    text = "2*3 **today** __init__ <b>x</b>"
    broadcast_id = create(desktop, account_id, text)
    final = run(desktop, broadcast_id)
    assert final.state is BroadcastState.FINISHED
    assert {(t, e) for _p, t, e in wire.sent()} == {(text, None)}
    assert_ended_properly(desktop, final, broadcast_id)


def test_a_cooldown_from_connect_is_exactly_telegrams(kurigram: tuple[Desktop, Wire, str]) -> None:
    desktop, wire, account_id = kurigram
    broadcast_id = create(desktop, account_id)
    wire.fail(raw.functions.users.GetFullUser, "FLOOD_WAIT_600", 420)
    start = desktop.clock.now()
    final = run(desktop, broadcast_id)
    assert final.state is BroadcastState.FINISHED
    assert desktop.clock.now() - start >= timedelta(seconds=600)
    assert_ended_properly(desktop, final, broadcast_id)
