"""The kurigram transport without any network: error mapping, Client construction, and the
login / send / @SpamBot logic against a stand-in Client."""

from __future__ import annotations

import asyncio
import socket
import stat
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import pyrogram
import pytest
from pyrogram import errors, raw
from pyrogram.types import User

from app.clock import FakeAsyncClock
from app.transports import pyrogram_transport as pt
from app.transports.base import (
    AccountInfo,
    AccountUnusable,
    FloodWait,
    LoginError,
    PasswordRequired,
    PeerFlood,
    RecipientUnavailable,
    SendTimeout,
    TransportError,
    TransportFactory,
)
from app.transports.pyrogram_transport import (
    PyrogramTransportFactory,
    display_name,
    map_error,
    peer,
)

_T = TypeVar("_T")
ACCOUNT = AccountInfo("15550000001", "Alice Liddell", "telegram")


def run(coro: Coroutine[Any, Any, _T]) -> _T:
    return asyncio.run(coro)


# --- map_error ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (errors.FloodWait(value=42), "FLOOD_WAIT"),
        (errors.SlowmodeWait(value=42), "SLOWMODE_WAIT"),
        (errors.FloodPremiumWait(value=42), "FLOOD_PREMIUM_WAIT"),
        (errors.FloodWait(value="42"), "FLOOD_WAIT"),
    ],
)
def test_flood_waits_keep_the_exact_seconds(exc: BaseException, kind: str) -> None:
    mapped = map_error(exc, "@bob")
    assert isinstance(mapped, FloodWait)
    assert mapped.seconds == 42
    assert mapped.kind == kind


def test_a_flood_wait_as_kurigram_raises_it_from_the_wire() -> None:
    with pytest.raises(errors.FloodWait) as raised:
        errors.RPCError.raise_it(
            raw.types.RpcError(error_code=420, error_message="FLOOD_WAIT_1234"),
            raw.functions.messages.SendMessage,
        )
    mapped = map_error(raised.value, "@bob")
    assert isinstance(mapped, FloodWait)
    assert mapped.seconds == 1234


def test_a_flood_wait_without_seconds_is_not_guessed() -> None:
    assert map_error(errors.FloodWait(value=None), "@bob") is None


def test_peer_flood() -> None:
    assert isinstance(map_error(errors.PeerFlood(), "@bob"), PeerFlood)


@pytest.mark.parametrize(
    "cls",
    [
        errors.UserDeactivatedBan,
        errors.UserDeactivated,
        errors.AuthKeyUnregistered,
        errors.SessionRevoked,
        errors.AuthKeyDuplicated,
        errors.SessionExpired,
        errors.AuthKeyInvalid,
        errors.FrozenMethodInvalid,
    ],
)
def test_account_fatal_errors(cls: type[errors.RPCError]) -> None:
    mapped = map_error(cls(), "@bob")
    assert isinstance(mapped, AccountUnusable)
    assert mapped.reason == cls.ID


@pytest.mark.parametrize(
    "exc",
    [
        TimeoutError(),
        ConnectionError("reset"),
        ConnectionResetError(),
        socket.gaierror(-2, "Name or service not known"),
        errors.Timeout503(),
        errors.Timedout(),
    ],
)
def test_no_answer_is_a_send_timeout(exc: BaseException) -> None:
    mapped = map_error(exc, "@bob")
    assert isinstance(mapped, SendTimeout)
    assert "@bob" in str(mapped)


@pytest.mark.parametrize(
    "cls",
    [
        errors.UsernameNotOccupied,
        errors.UsernameInvalid,
        errors.PeerIdInvalid,
        errors.PeerIdInvalid403,
        errors.UserIsBlocked,
        errors.UserIsBlocked403,
        errors.InputUserDeactivated,
        errors.UserPrivacyRestricted,
        errors.ChatWriteForbidden,
        errors.ChatWriteForbidden403,
        errors.UserIdInvalid,
        errors.PhoneNotOccupied,
        errors.YouBlockedUser,
        errors.UserIsBot,
        errors.PrivacyPremiumRequired,
        errors.AllowPaymentRequired,
        errors.ChatSendPlainForbidden,
        errors.ChannelPrivate,
    ],
)
def test_recipient_errors(cls: type[errors.RPCError]) -> None:
    mapped = map_error(cls(), "@bob")
    assert isinstance(mapped, RecipientUnavailable)
    assert mapped.recipient == "@bob"
    assert mapped.reason == cls.ID


@pytest.mark.parametrize(
    "exc",
    [
        errors.MessageTooLong(),
        errors.MessageEmpty(),
        errors.BadRequest(),
        errors.UserRestricted(),
        ValueError("boom"),
        KeyError("peer"),
        asyncio.CancelledError(),
    ],
)
def test_everything_else_is_not_mapped(exc: BaseException) -> None:
    assert map_error(exc, "@bob") is None


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


@pytest.fixture
def session_dir(tmp_path: Path) -> Path:
    return tmp_path / "sessions"


@pytest.fixture
def clock() -> FakeAsyncClock:
    return FakeAsyncClock(datetime(2026, 3, 1, 10, 0, tzinfo=UTC))


@pytest.fixture
def factory(session_dir: Path, clock: FakeAsyncClock) -> PyrogramTransportFactory:
    return PyrogramTransportFactory(12345, "0123456789abcdef", session_dir, clock=clock)


@pytest.fixture
def client_inits(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names of the pyrogram Clients built during the test."""
    built: list[str] = []
    original = pyrogram.Client.__init__

    def spy(self: pyrogram.Client, name: str, *args: Any, **kwargs: Any) -> None:
        built.append(name)
        original(self, name, *args, **kwargs)

    monkeypatch.setattr(pyrogram.Client, "__init__", spy)
    return built


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


# --- a stand-in for pyrogram.Client ------------------------------------------------------------


@dataclass
class FakeSentCode:
    phone_code_hash: str


@dataclass
class FakeMessage:
    id: int
    outgoing: bool
    text: str | None = None
    caption: str | None = None


class FakeClient:
    """Just enough of a Client for the transport's logic; never touches a network."""

    def __init__(self, name: str, workdir: Path) -> None:
        self.name = name
        self.workdir = workdir
        self.is_connected = False
        self.me: User | None = None
        self.authorized = True
        self.password: str | None = None
        self.fail: dict[str, BaseException] = {}
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.history: list[FakeMessage] = []
        self.replies_after_polls: int | None = None
        self._polls = 0

    def _call(self, method: str, *args: Any) -> None:
        self.calls.append((method, args))
        if method in self.fail:
            raise self.fail[method]

    async def connect(self) -> bool:
        self._call("connect")
        (self.workdir / f"{self.name}.session").write_bytes(b"session")
        self.is_connected = True
        return self.authorized

    async def disconnect(self) -> None:
        self._call("disconnect")
        self.is_connected = False

    async def send_code(self, phone: str) -> FakeSentCode:
        self._call("send_code", phone)
        return FakeSentCode("hash-1")

    async def sign_in(self, phone: str, code_hash: str, code: str) -> User | bool:
        self._call("sign_in", phone, code_hash, code)
        if code != "11111":
            raise errors.PhoneCodeInvalid()
        if self.password is not None:
            raise errors.SessionPasswordNeeded()
        return User(id=1, first_name="Alice")

    async def get_password_hint(self) -> str:
        self._call("get_password_hint")
        return "cat's name"

    async def check_password(self, password: str) -> User:
        self._call("check_password", password)
        if password != self.password:
            raise errors.PasswordHashInvalid()
        return User(id=1, first_name="Alice")

    async def get_me(self) -> User:
        self._call("get_me")
        return User(id=1, first_name="Alice", last_name="Liddell")

    async def send_message(self, chat_id: int | str, text: str) -> FakeMessage:
        self._call("send_message", chat_id, text)
        message = FakeMessage(id=len(self.history) + 1, outgoing=True, text=text)
        self.history.append(message)
        return message

    async def get_chat_history(self, chat_id: str, limit: int = 0) -> Any:
        self._call("get_chat_history", chat_id, limit)
        self._polls += 1
        if self.replies_after_polls is not None and self._polls == self.replies_after_polls:
            self.history.append(FakeMessage(id=len(self.history) + 1, outgoing=False, text="ok"))
        for message in reversed(self.history[-limit:]):
            yield message


@dataclass
class Clients:
    """The FakeClients a factory made, and the ones it will make next."""

    session_dir: Path
    made: list[FakeClient] = field(default_factory=list)
    prepared: list[FakeClient] = field(default_factory=list)

    def next(self) -> FakeClient:
        """The next Client the factory makes (to set its failures first)."""
        client = FakeClient("?", self.session_dir)
        self.prepared.append(client)
        return client

    def make(self, name: str) -> FakeClient:
        asyncio.get_running_loop()  # like the real one: only inside a loop
        client = self.prepared.pop(0) if self.prepared else FakeClient(name, self.session_dir)
        client.name = name
        self.made.append(client)
        return client


@pytest.fixture
def clients(
    factory: PyrogramTransportFactory, session_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> Clients:
    """Every Client the factory makes is a FakeClient."""
    fakes = Clients(session_dir)
    monkeypatch.setattr(factory, "_make_client", fakes.make)
    return fakes


# --- login -------------------------------------------------------------------------------------


def test_login_with_code_moves_the_session_in_place(
    factory: PyrogramTransportFactory, session_dir: Path, clients: Clients
) -> None:
    flow = factory.login_flow()

    async def scenario() -> AccountInfo:
        await flow.send_code("+1 555 000-0001")
        with pytest.raises(LoginError, match="wrong code"):
            await flow.sign_in("99999")
        return await flow.sign_in("11111")

    info = run(scenario())
    assert info == AccountInfo("15550000001", "Alice Liddell", "telegram")
    (client,) = clients.made
    assert client.name == "15550000001.login"
    assert ("send_code", ("15550000001",)) in client.calls
    assert ("sign_in", ("15550000001", "hash-1", "11111")) in client.calls
    assert not client.is_connected
    assert [p.name for p in session_dir.iterdir()] == ["15550000001.session"]


def test_login_with_password(
    factory: PyrogramTransportFactory, session_dir: Path, clients: Clients
) -> None:
    clients.next().password = "hunter2"
    flow = factory.login_flow()

    async def scenario() -> AccountInfo:
        await flow.send_code("+15550000002")
        with pytest.raises(PasswordRequired) as required:
            await flow.sign_in("11111")
        assert required.value.hint == "cat's name"
        with pytest.raises(LoginError, match="wrong password"):
            await flow.check_password("guess")
        return await flow.check_password("hunter2")

    assert run(scenario()).account_id == "15550000002"
    assert (session_dir / "15550000002.session").exists()


@pytest.mark.parametrize(
    ("exc", "message"),
    [
        (errors.PhoneNumberInvalid(), "invalid"),
        (errors.PhoneNumberBanned(), "banned"),
        (errors.FloodWait(value=600), "wait 600 s"),
        (TimeoutError(), "no answer"),
        (errors.ApiIdInvalid(), "API_ID_INVALID"),
    ],
)
def test_send_code_failures_are_login_errors(
    factory: PyrogramTransportFactory,
    session_dir: Path,
    clients: Clients,
    exc: BaseException,
    message: str,
) -> None:
    clients.next().fail["send_code"] = exc
    with pytest.raises(LoginError, match=message):
        run(factory.login_flow().send_code("+15550000001"))
    assert not clients.made[0].is_connected
    assert list(session_dir.iterdir()) == []  # the half-made session is gone


def test_login_rejects_a_bad_phone_without_a_client(
    factory: PyrogramTransportFactory, clients: Clients
) -> None:
    with pytest.raises(LoginError, match="invalid phone"):
        run(factory.login_flow().send_code("12"))
    assert clients.made == []


def test_cancel_keeps_an_existing_session(
    factory: PyrogramTransportFactory, session_dir: Path, clients: Clients
) -> None:
    existing = session_dir / "15550000001.session"
    existing.write_bytes(b"the working session")
    flow = factory.login_flow()

    async def scenario() -> None:
        await flow.send_code("+15550000001")
        await flow.cancel()
        with pytest.raises(LoginError):
            await flow.sign_in("11111")

    run(scenario())
    assert [p.name for p in session_dir.iterdir()] == [existing.name]
    assert existing.read_bytes() == b"the working session"


# --- sending -----------------------------------------------------------------------------------


@pytest.fixture
def session(session_dir: Path) -> Path:
    path = session_dir / f"{ACCOUNT.account_id}.session"
    path.write_bytes(b"session")
    return path


def test_connect_needs_a_session_file(factory: PyrogramTransportFactory, clients: Clients) -> None:
    with pytest.raises(AccountUnusable, match="NO_SESSION"):
        run(factory.transport(ACCOUNT).connect())
    assert clients.made == []


def test_connect_refuses_an_unauthorized_session(
    factory: PyrogramTransportFactory,
    session: Path,
    clients: Clients,
) -> None:
    clients.next().authorized = False
    with pytest.raises(AccountUnusable, match="AUTH_KEY_UNREGISTERED"):
        run(factory.transport(ACCOUNT).connect())
    assert not clients.made[0].is_connected


def test_connect_maps_a_ban(
    factory: PyrogramTransportFactory,
    session: Path,
    clients: Clients,
) -> None:
    clients.next().fail["get_me"] = errors.UserDeactivatedBan()
    with pytest.raises(AccountUnusable) as raised:
        run(factory.transport(ACCOUNT).connect())
    assert raised.value.reason == "USER_DEACTIVATED_BAN"
    assert not clients.made[0].is_connected


def test_send_message_connects_once_and_maps_errors(
    factory: PyrogramTransportFactory,
    session: Path,
    clients: Clients,
) -> None:
    transport = factory.transport(ACCOUNT)

    async def scenario() -> list[str]:
        outcomes = []
        await transport.send_message("@bob", "hi")
        await transport.send_message("4242", "hi")
        client = clients.made[0]
        for exc in (errors.FloodWait(value=42), errors.PeerFlood(), errors.UsernameNotOccupied()):
            client.fail["send_message"] = exc
            try:
                await transport.send_message("@carol", "hi")
            except TransportError as mapped:
                outcomes.append(type(mapped).__name__)
        client.fail["send_message"] = ValueError("a bug")
        with pytest.raises(ValueError):
            await transport.send_message("@carol", "hi")
        await transport.disconnect()
        await transport.disconnect()
        return outcomes

    outcomes = run(scenario())
    assert outcomes == ["FloodWait", "PeerFlood", "RecipientUnavailable"]
    (client,) = clients.made
    sends = [args for method, args in client.calls if method == "send_message"]
    assert sends[:2] == [("@bob", "hi"), (4242, "hi")]
    assert [m for m, _ in client.calls].count("connect") == 1
    assert client.me is not None
    assert not client.is_connected


def test_ask_spambot_polls_with_the_clock_until_the_bot_answers(
    factory: PyrogramTransportFactory,
    session: Path,
    clients: Clients,
    clock: FakeAsyncClock,
) -> None:
    clients.next().replies_after_polls = 3
    answer = run(factory.transport(ACCOUNT).ask_spambot())
    assert answer == "ok"
    assert clock.sleeps == [pt.SPAMBOT_POLL_INTERVAL] * 3
    assert ("send_message", ("SpamBot", "/start")) in clients.made[0].calls


def test_ask_spambot_gives_up_after_a_bounded_wait(
    factory: PyrogramTransportFactory,
    session: Path,
    clients: Clients,
    clock: FakeAsyncClock,
) -> None:
    with pytest.raises(SendTimeout, match="SpamBot"):
        run(factory.transport(ACCOUNT).ask_spambot())
    assert clock.sleeps == [pt.SPAMBOT_POLL_INTERVAL] * pt.SPAMBOT_POLLS
