"""The kurigram transport without any network: error mapping, Client construction, and the
login / send / @SpamBot logic through kurigram's real Client with only the wire faked
(tests/helpers/kurigram_wire.py): every error below is kurigram's own class, raised by kurigram
from the ``rpc_error`` Telegram would send."""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path
from typing import Any

import pyrogram
import pytest
from pyrogram import enums, raw
from pyrogram.session import Session
from pyrogram.types import User

from app.clock import FakeAsyncClock
from app.i18n import Translator
from app.transports import pyrogram_transport as pt
from app.transports.base import (
    MAX_USER_ID,
    AccountInfo,
    AccountUnusable,
    FloodWait,
    LoginEmailRequired,
    LoginError,
    PasswordRequired,
    PeerFlood,
    RecipientBlocked,
    RecipientUnavailable,
    SendTimeout,
    TelegramRefused,
    TextRejected,
    TransportError,
    TransportFactory,
)
from app.transports.pyrogram_transport import (
    PyrogramTransportFactory,
    display_name,
    peer,
)
from app.viewmodels.errors import describe_error
from tests.helpers import kurigram_wire as wire_module
from tests.helpers.kurigram_transport import ACCOUNT, run, sign_in
from tests.helpers.kurigram_wire import LOGIN_CODE, Wire


def test_the_expected_kurigram_is_the_one_imported() -> None:
    # scripts/test-kurigram-floor sets this: a floor pass that silently imported the newest
    # kurigram would prove nothing.
    expected = os.environ.get("TGFLOW_EXPECT_KURIGRAM")
    if expected is None:
        pytest.skip("not the kurigram floor pass")
    assert pyrogram.__version__ == expected


def test_peer_and_display_name() -> None:
    assert peer("123456") == 123456
    assert peer(" -100123 ") == -100123
    assert peer("@bob") == "@bob"
    assert peer("+15550000001") == "+15550000001"
    assert display_name(User(id=1, first_name="Alice", last_name="Liddell")) == "Alice Liddell"
    assert display_name(User(id=1, first_name="Alice")) == "Alice"
    assert display_name(User(id=1, username="alice")) == "alice"
    assert display_name(User(id=7)) == "7"


# --- the factory and its Clients ---------------------------------------------------------------


def test_session_dir_is_private(session_dir: Path) -> None:
    session_dir.mkdir(mode=0o755)
    session_dir.chmod(0o755)
    PyrogramTransportFactory(1, "hash", session_dir)
    assert stat.S_IMODE(session_dir.stat().st_mode) == 0o700


def test_factory_rejects_missing_credentials(session_dir: Path) -> None:
    with pytest.raises(ValueError):
        PyrogramTransportFactory(0, "hash", session_dir)
    with pytest.raises(ValueError):
        PyrogramTransportFactory(1, "", session_dir)


def test_nothing_builds_a_client_outside_a_loop(
    factory: PyrogramTransportFactory, client_inits: list[str]
) -> None:
    as_protocol: TransportFactory = factory
    assert as_protocol.kind == "telegram"
    transport = factory.transport(ACCOUNT)
    flow = factory.login_flow()
    factory.remove(ACCOUNT)
    assert transport.account == ACCOUNT
    assert flow is not None
    assert client_inits == []
    with pytest.raises(RuntimeError):
        factory._make_client(ACCOUNT.account_id)
    assert client_inits == []


def test_the_client_never_sleeps_through_a_flood_wait(
    factory: PyrogramTransportFactory, session_dir: Path, client_inits: list[str]
) -> None:
    async def build() -> tuple[pyrogram.Client, asyncio.AbstractEventLoop]:
        return factory._make_client(ACCOUNT.account_id), asyncio.get_running_loop()

    client, loop = run(build())
    assert client_inits == [ACCOUNT.account_id]
    assert client.sleep_threshold == 0
    assert client.no_updates is True
    assert client.name == ACCOUNT.account_id
    assert client.api_id == 12345
    assert client.workdir == session_dir
    assert client.loop is loop
    assert not client.is_connected
    client.executor.shutdown(wait=False)


def test_remove_deletes_only_that_accounts_session(
    factory: PyrogramTransportFactory, session_dir: Path
) -> None:
    doomed = [
        "15550000001.session",
        "15550000001.session-journal",
        "15550000001.login.session",
    ]
    kept = ["15550000002.session", "155500000011.session"]
    for name in doomed + kept:
        (session_dir / name).write_bytes(b"x")
    factory.remove(ACCOUNT)
    assert sorted(p.name for p in session_dir.iterdir()) == sorted(kept)


# --- kurigram's real Client over a fake wire ---------------------------------------------------


# --- login -------------------------------------------------------------------------------------


def test_login_with_code_moves_the_session_in_place(
    factory: PyrogramTransportFactory, session_dir: Path, wire: Wire
) -> None:
    flow = factory.login_flow()

    async def scenario() -> AccountInfo:
        await flow.send_code("+1 555 000-0001")
        with pytest.raises(LoginError, match="wrong code"):
            await flow.sign_in("99999")
        return await flow.sign_in(LOGIN_CODE)

    info = run(scenario())
    assert info == AccountInfo("15550000001", "Alice Liddell", "telegram")
    (send_code,) = wire.calls(raw.functions.auth.SendCode)
    assert send_code.phone_number == "15550000001"
    assert [q.phone_code for q in wire.calls(raw.functions.auth.SignIn)] == ["99999", LOGIN_CODE]
    assert [p.name for p in session_dir.iterdir()] == ["15550000001.session"]


def test_login_with_password(
    factory: PyrogramTransportFactory, session_dir: Path, wire: Wire
) -> None:
    wire.password = "hunter2"
    flow = factory.login_flow()

    async def scenario() -> AccountInfo:
        await flow.send_code("+15550000001")
        with pytest.raises(PasswordRequired) as required:
            await flow.sign_in(LOGIN_CODE)
        assert required.value.hint == "cat's name"
        with pytest.raises(LoginError, match="wrong password"):
            await flow.check_password("guess")
        return await flow.check_password("hunter2")

    assert run(scenario()).account_id == "15550000001"
    assert (session_dir / "15550000001.session").exists()


@pytest.mark.parametrize(
    ("code", "error", "message"),
    [
        (400, "PHONE_NUMBER_INVALID", "invalid"),
        (400, "PHONE_NUMBER_BANNED", "banned"),
        (420, "FLOOD_WAIT_600", "wait 600 s"),
        (420, "FLOOD_PREMIUM_WAIT_30", "wait 30 s"),
        (400, "API_ID_INVALID", "API_ID_INVALID"),
    ],
)
def test_send_code_failures_are_login_errors(
    factory: PyrogramTransportFactory,
    session_dir: Path,
    wire: Wire,
    code: int,
    error: str,
    message: str,
) -> None:
    wire.fail(raw.functions.auth.SendCode, error, code)
    with pytest.raises(LoginError, match=message):
        run(factory.login_flow().send_code("+15550000001"))
    assert list(session_dir.iterdir()) == []  # the half-made session is gone
    assert wire.sleeps == []  # kurigram slept through nothing


def test_a_login_timeout_is_a_login_error(
    factory: PyrogramTransportFactory, session_dir: Path, wire: Wire
) -> None:
    # kurigram retries a request that timed out; every retry times out here.
    for _ in range(Session.MAX_RETRIES):
        wire.fail(raw.functions.auth.SendCode, TimeoutError("Request timed out"))
    with pytest.raises(LoginError, match="no answer"):
        run(factory.login_flow().send_code("+15550000001"))
    assert list(session_dir.iterdir()) == []


def test_a_flood_wait_at_sign_in_keeps_the_flow(
    factory: PyrogramTransportFactory, session_dir: Path, wire: Wire
) -> None:
    flow = factory.login_flow()
    wire.fail(raw.functions.auth.SignIn, "FLOOD_WAIT_120", 420)

    async def scenario() -> AccountInfo:
        await flow.send_code("+15550000001")
        with pytest.raises(LoginError, match="wait 120 s"):
            await flow.sign_in(LOGIN_CODE)
        return await flow.sign_in(LOGIN_CODE)  # after the wait, the same code works

    assert run(scenario()).account_id == "15550000001"


def test_a_login_that_needs_an_email_set_up_says_so_instead_of_waiting(
    factory: PyrogramTransportFactory, session_dir: Path, wire: Wire
) -> None:
    wire.sent_code_type = raw.types.auth.SentCodeTypeSetUpEmailRequired()
    flow = factory.login_flow()
    with pytest.raises(LoginEmailRequired, match="login email"):
        run(flow.send_code("+15550000001"))
    assert list(session_dir.iterdir()) == []
    with pytest.raises(LoginError, match="request a code first"):
        run(flow.sign_in(LOGIN_CODE))


def test_login_rejects_a_bad_phone_without_a_request(
    factory: PyrogramTransportFactory, wire: Wire
) -> None:
    with pytest.raises(LoginError, match="invalid phone"):
        run(factory.login_flow().send_code("12"))
    assert wire.queries == []


def test_cancel_keeps_an_existing_session(
    factory: PyrogramTransportFactory, session_dir: Path, wire: Wire
) -> None:
    existing = session_dir / "15550000001.session"
    existing.write_bytes(b"the working session")
    flow = factory.login_flow()

    async def scenario() -> None:
        await flow.send_code("+15550000001")
        await flow.cancel()
        with pytest.raises(LoginError):
            await flow.sign_in(LOGIN_CODE)

    run(scenario())
    assert [p.name for p in session_dir.iterdir()] == [existing.name]
    assert existing.read_bytes() == b"the working session"


# --- connecting --------------------------------------------------------------------------------


def test_connect_needs_a_session_file(factory: PyrogramTransportFactory, wire: Wire) -> None:
    with pytest.raises(AccountUnusable, match="NO_SESSION"):
        run(factory.transport(ACCOUNT).connect())
    assert wire.queries == []


def test_connect_refuses_an_unreadable_session_file(
    factory: PyrogramTransportFactory, session_dir: Path, wire: Wire
) -> None:
    (session_dir / f"{ACCOUNT.account_id}.session").write_bytes(b"not a database" * 100)
    with pytest.raises(AccountUnusable, match="SESSION_UNREADABLE"):
        run(factory.transport(ACCOUNT).connect())


def test_connect_refuses_an_unauthorized_session(
    factory: PyrogramTransportFactory, session_dir: Path, wire: Wire
) -> None:
    flow = factory.login_flow()

    async def half_login() -> None:
        await flow.send_code("+15550000001")  # a session with a key but no user

    run(half_login())
    login = session_dir / "15550000001.login.session"
    (session_dir / "15550000001.session").write_bytes(login.read_bytes())
    run(flow.cancel())
    with pytest.raises(AccountUnusable, match="AUTH_KEY_UNREGISTERED"):
        run(factory.transport(ACCOUNT).connect())


@pytest.mark.parametrize(
    ("code", "error", "expected", "detail"),
    [
        (401, "USER_DEACTIVATED_BAN", AccountUnusable, "USER_DEACTIVATED_BAN"),
        (403, "USER_RESTRICTED", AccountUnusable, "USER_RESTRICTED"),
        (406, "USER_RESTRICTED", AccountUnusable, "USER_RESTRICTED"),
        (420, "FLOOD_WAIT_77", FloodWait, "77"),
        (-503, "Timeout", SendTimeout, "no answer"),
        (400, "BRAND_NEW_THING", TelegramRefused, "BRAND_NEW_THING"),
    ],
)
def test_connect_maps_what_get_me_meets(
    factory: PyrogramTransportFactory,
    wire: Wire,
    code: int,
    error: str,
    expected: type[TransportError],
    detail: str,
) -> None:
    sign_in(factory)
    # kurigram retries a -503 itself; each retry meets it again.
    for _ in range(Session.MAX_RETRIES if code < 0 else 1):
        wire.fail(raw.functions.users.GetFullUser, error, code)
    with pytest.raises(expected, match=detail):
        run(factory.transport(ACCOUNT).connect())


# --- sending -----------------------------------------------------------------------------------


def test_text_reaches_telegram_exactly_as_typed(
    factory: PyrogramTransportFactory, wire: Wire, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = "2*3 **today** __init__ <b>x</b> `code` [link](http://x) ||spoiler||"
    seen: list[tuple[Any, str, Any]] = []
    original = pyrogram.Client.send_message

    async def spy(self: pyrogram.Client, chat_id: Any, text: str, **kwargs: Any) -> Any:
        seen.append((chat_id, text, kwargs.get("parse_mode")))
        return await original(self, chat_id, text, **kwargs)

    monkeypatch.setattr(pyrogram.Client, "send_message", spy)
    sign_in(factory)
    run(factory.transport(ACCOUNT).send_message("@bob_smith", text))
    assert seen == [("@bob_smith", text, enums.ParseMode.DISABLED)]
    # And on the wire: the very characters, no entities made of them.
    assert wire.sent() == [(1001, text, None)]
    assert wire.sent()[0][1].encode() == text.encode()


def test_send_message_connects_once_and_resolves_each_kind_of_recipient(
    factory: PyrogramTransportFactory, wire: Wire
) -> None:
    sign_in(factory)
    transport = factory.transport(ACCOUNT)

    async def scenario() -> None:
        await transport.send_message("@bob_smith", "hi")
        await transport.send_message("+15550001002", "hi")
        await transport.send_message("4242", "hi")
        await transport.disconnect()
        await transport.disconnect()

    before = len(wire.calls(raw.functions.users.GetFullUser))
    run(scenario())
    assert [peer_id for peer_id, _t, _e in wire.sent()] == [1001, 1002, 4242]
    assert len(wire.calls(raw.functions.contacts.ResolvePhone)) == 1
    assert len(wire.calls(raw.functions.users.GetFullUser)) == before + 1  # one connect


def test_resolved_peers_are_saved_to_the_session(
    factory: PyrogramTransportFactory, wire: Wire
) -> None:
    sign_in(factory)

    async def one_run() -> None:
        transport = factory.transport(ACCOUNT)
        await transport.send_message("@bob_smith", "hi")
        await transport.send_message("+15550001002", "hi")
        await transport.disconnect()

    run(one_run())
    run(one_run())  # a new Client reading the same session file
    assert len(wire.calls(raw.functions.contacts.ResolveUsername)) == 1
    assert len(wire.calls(raw.functions.contacts.ResolvePhone)) == 1
    assert len(wire.sent()) == 4


def test_an_id_kurigram_cannot_address_fails_that_recipient_only(
    factory: PyrogramTransportFactory, wire: Wire
) -> None:
    sign_in(factory)
    transport = factory.transport(ACCOUNT)
    too_big = str(MAX_USER_ID + 1)
    with pytest.raises(RecipientUnavailable) as raised:
        run(transport.send_message(too_big, "hi"))
    assert raised.value.recipient == too_big
    assert "PEER_ID_INVALID" in raised.value.reason
    assert wire.calls(raw.functions.messages.SendMessage) == []
    assert wire.calls(raw.functions.users.GetUsers) == []


@pytest.mark.parametrize(
    ("code", "error", "expected", "attribute", "value"),
    [
        (420, "FLOOD_WAIT_42", FloodWait, "seconds", 42),
        (420, "SLOWMODE_WAIT_42", FloodWait, "kind", "SLOWMODE_WAIT"),
        (420, "FLOOD_PREMIUM_WAIT_42", FloodWait, "kind", "FLOOD_PREMIUM_WAIT"),
        (420, "2FA_CONFIRM_WAIT_3600", FloodWait, "seconds", 3600),
        (400, "PEER_FLOOD", PeerFlood, "args", ("PEER_FLOOD: Telegram limits this account",)),
        (403, "USER_RESTRICTED", AccountUnusable, "reason", None),
        (406, "USER_RESTRICTED", AccountUnusable, "reason", None),
        (400, "USER_BANNED_IN_CHANNEL", AccountUnusable, "reason", None),
        (403, "USER_BANNED_IN_CHANNEL", AccountUnusable, "reason", None),
        (401, "SESSION_REVOKED", AccountUnusable, "reason", "SESSION_REVOKED"),
        (400, "MESSAGE_TOO_LONG", TextRejected, "reason", None),
        (400, "USER_IS_BLOCKED", RecipientBlocked, "reason", "USER_IS_BLOCKED"),
        (403, "USER_IS_BLOCKED", RecipientBlocked, "reason", "USER_IS_BLOCKED"),
        (400, "USER_PRIVACY_RESTRICTED", RecipientUnavailable, "reason", None),
        (400, "BRAND_NEW_THING", RecipientUnavailable, "reason", "BRAND_NEW_THING"),
        (403, "BRAND_NEW_THING", TelegramRefused, "reason", "BRAND_NEW_THING"),
        # kurigram retries a 500 and then gives up with a TimeoutError: delivery unknown.
        (
            500,
            "SOMETHING_BROKE",
            SendTimeout,
            "args",
            ("@bob_smith: no answer from Telegram (TimeoutError)",),
        ),
    ],
)
def test_each_error_of_a_send_as_kurigram_raises_it(
    factory: PyrogramTransportFactory,
    wire: Wire,
    code: int,
    error: str,
    expected: type[TransportError],
    attribute: str,
    value: object,
) -> None:
    sign_in(factory)
    # kurigram retries 500s itself; make every retry meet it, as a broken server would.
    for _ in range(Session.MAX_RETRIES if code == 500 else 1):
        wire.fail(raw.functions.messages.SendMessage, error, code)
    with pytest.raises(TransportError) as raised:
        run(factory.transport(ACCOUNT).send_message("@bob_smith", "hi"))
    assert type(raised.value) is expected
    got = getattr(raised.value, attribute)
    if value is None:
        assert error in str(got)
    else:
        assert got == value
    assert wire.sent() == []
    # No wait was slept inside kurigram: each reached the caller at once.
    assert all(s <= Session.RETRY_DELAY for s in wire.sleeps)


def test_a_send_timeout_says_delivery_is_unknown(
    factory: PyrogramTransportFactory, wire: Wire
) -> None:
    sign_in(factory)
    for _ in range(Session.MAX_RETRIES):
        wire.fail(raw.functions.messages.SendMessage, TimeoutError("Request timed out"))
    with pytest.raises(SendTimeout, match="@bob_smith"):
        run(factory.transport(ACCOUNT).send_message("@bob_smith", "hi"))


# --- @SpamBot ----------------------------------------------------------------------------------


def test_ask_spambot_polls_with_the_clock_until_the_bot_answers(
    factory: PyrogramTransportFactory, wire: Wire, clock: FakeAsyncClock
) -> None:
    sign_in(factory)
    wire.spambot_answers.append("Good news, no limits are currently applied to your account.")
    answer = run(factory.transport(ACCOUNT).ask_spambot())
    assert answer.startswith("Good news")
    assert clock.sleeps == [pt.SPAMBOT_POLL_INTERVAL]
    assert wire.sent()[0][:2] == (wire_module.SPAMBOT_ID, "/start")


def test_ask_spambot_never_sleeps_inside_kurigram(
    factory: PyrogramTransportFactory, wire: Wire, clock: FakeAsyncClock
) -> None:
    # Client.get_chat_history would sleep a FloodWait under 60 s inside kurigram.
    sign_in(factory)
    wire.fail(raw.functions.messages.GetHistory, "FLOOD_WAIT_30", 420)
    with pytest.raises(FloodWait) as raised:
        run(factory.transport(ACCOUNT).ask_spambot())
    assert raised.value.seconds == 30
    assert wire.sleeps == []


def test_ask_spambot_gives_up_after_a_bounded_wait(
    factory: PyrogramTransportFactory, wire: Wire, clock: FakeAsyncClock
) -> None:
    sign_in(factory)
    with pytest.raises(SendTimeout, match="SpamBot"):
        run(factory.transport(ACCOUNT).ask_spambot())
    assert clock.sleeps == [pt.SPAMBOT_POLL_INTERVAL] * pt.SPAMBOT_POLLS
    assert len(wire.calls(raw.functions.messages.GetHistory)) == pt.SPAMBOT_POLLS


@pytest.mark.parametrize(
    ("language", "expected"),
    [("ru", "почта для входа"), ("en", "login email")],
)
def test_the_login_email_step_reads_in_the_windows_language(language: str, expected: str) -> None:
    message = describe_error(LoginEmailRequired(), Translator(language))
    assert expected in message
    assert "SETUP_EMAIL_REQUIRED" not in message
