"""Every Telegram error ends a batch properly, with kurigram's real Client over a fake wire
(tests/helpers/kurigram_wire.py): the real BroadcastWorker and the real backend over HTTP, each
error raised by kurigram itself from the rpc_error Telegram would send.

Also run against the kurigram floor (scripts/test-kurigram-floor).
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from pyrogram import raw

from app.antispam import AccountState
from app.broadcast_store import BroadcastState
from app.transports.pyrogram_transport import PyrogramTransportFactory
from tests.helpers.broadcast import (
    PACING,
    POLICY,
    READERS,
    account_status,
    assert_ended_properly,
    core_of,
    create,
    run,
)
from tests.helpers.desktop import Desktop
from tests.helpers.kurigram_wire import LOGIN_CODE, Wire, install, user


@pytest.fixture
def kurigram(
    desktop: Desktop, monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Desktop, Wire, str]:
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))  # kurigram's ./unknown_errors.txt
    wire = Wire()
    wire.users.extend(user(5000 + i, username=name[1:]) for i, name in enumerate(READERS))
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
