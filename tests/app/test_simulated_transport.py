"""The simulated Telegram: deterministic by seed, scriptable, and a faithful Transport."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from datetime import UTC, datetime
from typing import Any, TypeVar

import pytest

from app.clock import FakeAsyncClock
from app.transports.base import (
    AccountInfo,
    AccountUnusable,
    FloodWait,
    LoginError,
    LoginFlow,
    PasswordRequired,
    PeerFlood,
    RecipientUnavailable,
    SendTimeout,
    Transport,
    TransportError,
    TransportFactory,
)
from app.transports.simulated import (
    SPAMBOT_FREE,
    SimulatedMessage,
    SimulatedNetwork,
    SimulatedTransport,
    SimulatedTransportFactory,
)

_T = TypeVar("_T")
START = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
ALICE = AccountInfo("15550000001", "Alice", "simulated")


def run(coro: Coroutine[Any, Any, _T]) -> _T:
    return asyncio.run(coro)


def make_network(seed: int = 0, **options: Any) -> SimulatedNetwork:
    return SimulatedNetwork(seed, clock=FakeAsyncClock(START), **options)


async def send_all(transport: Transport, recipients: list[str]) -> list[str]:
    """Send to each recipient; the outcome of each: "ok" or the error's class and details."""
    outcomes: list[str] = []
    for recipient in recipients:
        try:
            await transport.send_message(recipient, f"hello {recipient}")
        except FloodWait as exc:
            outcomes.append(f"FloodWait {exc.seconds}")
        except TransportError as exc:
            outcomes.append(type(exc).__name__)
        else:
            outcomes.append("ok")
    return outcomes


RECIPIENTS = [f"@user{i}" for i in range(200)]
NOISY = {
    "latency": (0.05, 0.5),
    "flood_wait_rate": 0.05,
    "peer_flood_rate": 0.03,
    "unknown_user_rate": 0.05,
}


def test_the_factory_is_a_transport_factory() -> None:
    factory: TransportFactory = SimulatedTransportFactory(make_network())
    assert factory.kind == "simulated"
    transport: Transport = factory.transport(ALICE)
    flow: LoginFlow = factory.login_flow()
    assert transport.account == ALICE
    assert flow is not None
    factory.remove(ALICE)  # nothing on disk; must not fail


def test_same_seed_same_run() -> None:
    runs = []
    for _ in range(2):
        network = make_network(11, **NOISY)
        outcomes = run(send_all(SimulatedTransport(network, ALICE), RECIPIENTS))
        runs.append((outcomes, network.sent, network.clock.sleeps))  # type: ignore[attr-defined]
    assert runs[0] == runs[1]
    outcomes = runs[0][0]
    # The rates really produce every kind of outcome, with exact FloodWait lengths in range.
    kinds = {o.split()[0] for o in outcomes}
    assert kinds == {"ok", "FloodWait", "PeerFlood", "RecipientUnavailable"}
    assert all(5 <= int(o.split()[1]) <= 30 for o in outcomes if o.startswith("FloodWait"))


def test_another_seed_another_run() -> None:
    a = run(send_all(SimulatedTransport(make_network(1, **NOISY), ALICE), RECIPIENTS))
    b = run(send_all(SimulatedTransport(make_network(2, **NOISY), ALICE), RECIPIENTS))
    assert a != b


def test_latency_goes_through_the_clock() -> None:
    network = make_network(latency=(0.2, 0.4))
    clock = network.clock
    assert isinstance(clock, FakeAsyncClock)
    transport = SimulatedTransport(network, ALICE)
    run(transport.send_message("@bob", "hi"))
    assert len(clock.sleeps) == 2  # connect, send
    assert all(0.2 <= s <= 0.4 for s in clock.sleeps)
    assert network.sent == [SimulatedMessage(ALICE.account_id, "@bob", "hi", clock.now())]


def test_no_latency_no_waits() -> None:
    network = make_network()
    run(send_all(SimulatedTransport(network, ALICE), ["@a", "@b"]))
    assert network.clock.sleeps == []  # type: ignore[attr-defined]
    assert [m.recipient for m in network.sent] == ["@a", "@b"]
    assert network.attempts == 2


def test_scripted_error_on_the_next_send() -> None:
    network = make_network()
    network.script(ALICE.account_id, FloodWait(42))
    outcomes = run(send_all(SimulatedTransport(network, ALICE), ["@a", "@b"]))
    assert outcomes == ["FloodWait 42", "ok"]
    assert [m.recipient for m in network.sent] == ["@b"]
    assert network.attempts == 2


def test_scripted_errors_at_attempt_n() -> None:
    network = make_network()
    network.script(ALICE.account_id, PeerFlood(), at=3)
    network.script(ALICE.account_id, SendTimeout("lost"), at=5)
    network.script("someone else", PeerFlood(), at=1)
    outcomes = run(send_all(SimulatedTransport(network, ALICE), [f"@u{i}" for i in range(6)]))
    assert outcomes == ["ok", "ok", "PeerFlood", "ok", "SendTimeout", "ok"]
    assert network.attempts_of(ALICE.account_id) == 6
    with pytest.raises(ValueError):
        network.script(ALICE.account_id, PeerFlood(), at=6)  # that attempt is past


def test_unknown_recipients_are_unavailable() -> None:
    network = make_network()
    transport = SimulatedTransport(network, ALICE)
    with pytest.raises(RecipientUnavailable) as raised:
        run(transport.send_message("@unknown_user1", "hi"))
    assert raised.value.recipient == "@unknown_user1"
    assert network.sent == []


def test_ban_makes_every_request_fail() -> None:
    network = make_network()
    transport = SimulatedTransport(network, ALICE)
    run(transport.send_message("@a", "hi"))
    network.ban(ALICE.account_id)
    with pytest.raises(AccountUnusable) as raised:
        run(transport.send_message("@b", "hi"))
    assert raised.value.reason == "USER_DEACTIVATED_BAN"
    with pytest.raises(AccountUnusable):
        run(transport.ask_spambot())
    network.ban("other", reason="SESSION_REVOKED")
    with pytest.raises(AccountUnusable, match="SESSION_REVOKED"):
        run(SimulatedTransport(network, AccountInfo("other", "O", "simulated")).connect())
    assert [m.recipient for m in network.sent] == ["@a"]


def test_spambot_tells_of_a_peer_flood_limit() -> None:
    network = make_network()
    transport = SimulatedTransport(network, ALICE)
    assert run(transport.ask_spambot()) == SPAMBOT_FREE
    assert "no limits" in SPAMBOT_FREE
    network.script(ALICE.account_id, PeerFlood())
    run(send_all(transport, ["@a"]))
    limited = run(transport.ask_spambot())
    assert "limited until 02 Mar 2026, 10:00 UTC" in limited
    assert network.spambot_reply("someone else") == SPAMBOT_FREE


@pytest.mark.parametrize(
    "options",
    [
        {"flood_wait_rate": 1.5},
        {"flood_wait_rate": 0.6, "peer_flood_rate": 0.6},
        {"latency": (1.0, 0.5)},
        {"flood_wait_seconds": (10, 5)},
    ],
)
def test_network_rejects_nonsense(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        make_network(**options)


# --- login ------------------------------------------------------------------------------------


def test_login_with_code() -> None:
    flow = SimulatedTransportFactory(make_network()).login_flow()

    async def scenario() -> AccountInfo:
        await flow.send_code("+1 (555) 000-0001")
        return await flow.sign_in("12345")

    info = run(scenario())
    assert info == AccountInfo("15550000001", "Demo 0001", "simulated")


def test_login_wrong_code_can_be_retried() -> None:
    flow = SimulatedTransportFactory(make_network()).login_flow()

    async def scenario() -> AccountInfo:
        await flow.send_code("+15550000001")
        with pytest.raises(LoginError, match="wrong code"):
            await flow.sign_in("54321")
        return await flow.sign_in("12345")

    assert run(scenario()).account_id == "15550000001"


def test_login_with_password_for_phones_ending_in_2() -> None:
    flow = SimulatedTransportFactory(make_network()).login_flow()

    async def scenario() -> AccountInfo:
        await flow.send_code("+15550000002")
        with pytest.raises(PasswordRequired) as required:
            await flow.sign_in("12345")
        assert required.value.hint
        with pytest.raises(LoginError, match="wrong password"):
            await flow.check_password("guess")
        return await flow.check_password("secret")

    assert run(scenario()).account_id == "15550000002"


@pytest.mark.parametrize("phone", ["", "+123456", "+1234567890123456", "+7999abc4567", "hello"])
def test_login_rejects_invalid_phones(phone: str) -> None:
    flow = SimulatedTransportFactory(make_network()).login_flow()
    with pytest.raises(LoginError, match="invalid phone"):
        run(flow.send_code(phone))


def test_login_steps_out_of_order_are_refused() -> None:
    flow = SimulatedTransportFactory(make_network()).login_flow()

    async def scenario() -> None:
        with pytest.raises(LoginError):
            await flow.sign_in("12345")
        await flow.send_code("+15550000001")
        with pytest.raises(LoginError):
            await flow.check_password("secret")  # no password was asked for
        await flow.cancel()
        with pytest.raises(LoginError):
            await flow.sign_in("12345")

    run(scenario())
