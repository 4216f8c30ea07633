"""TelemetryClient against the real backend over HTTP: once-only delivery, opt-in, anonymity."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import stat
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from sqlalchemy import select

from agent.clock import FakeClock
from app.telemetry import EVENTS_PATH, FlushResult, TelemetryClient, load_or_create_install_id
from server_stub.models import TelemetryEvent
from tests.helpers.backend import Backend, BackendFactory

_T = TypeVar("_T")


def run(coro: Coroutine[Any, Any, _T]) -> _T:
    return asyncio.run(coro)


def stored(backend: Backend) -> list[TelemetryEvent]:
    with backend.services.ctx.read() as session:
        return list(session.scalars(select(TelemetryEvent).order_by(TelemetryEvent.occurred_at)))


@dataclass
class Wire(httpx.AsyncBaseTransport):
    """Real HTTP to the server that records every request body and can lose requests or answers.

    ``faults`` is consumed one per request: ``"ok"`` sends normally, ``"lose_request"`` fails
    before anything is sent (connection refused), ``"lose_answer"`` sends the request, lets the
    server handle it, and then fails as if the answer never came back. Each request gets its own
    connection, so no connection outlives the event loop of the test step that opened it.
    """

    faults: list[str] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        fault = self.faults.pop(0) if self.faults else "ok"
        if fault == "lose_request":
            raise httpx.ConnectError("connection refused", request=request)
        self.bodies.append(await request.aread())
        async with httpx.AsyncHTTPTransport() as inner:
            response = await inner.handle_async_request(request)
            await response.aread()
        if fault == "lose_answer":
            raise httpx.ReadError("connection reset before the answer arrived", request=request)
        return response


ClientFactory = Callable[..., TelemetryClient]


@pytest.fixture
def server(make_backend: BackendFactory) -> Backend:
    return make_backend()


@pytest.fixture
def wire() -> Wire:
    return Wire()


@pytest.fixture
def make_client(server: Backend, wire: Wire, tmp_path: Path) -> Iterator[ClientFactory]:
    """Clients of ``server`` sending through ``wire``; ``overrides`` are TelemetryClient options."""
    https: list[httpx.AsyncClient] = []

    def make(**overrides: Any) -> TelemetryClient:
        options: dict[str, Any] = {
            "enabled": True,
            "install_id_path": tmp_path / "TGFlow" / "install_id",
            "app_version": "0.1.0",
            "clock": FakeClock(datetime(2026, 1, 15, 12, 0, tzinfo=UTC)),
            **overrides,
        }
        if "http" not in options:
            options["http"] = httpx.AsyncClient(transport=wire, timeout=30)
            https.append(options["http"])
        return TelemetryClient(server.url, **options)

    yield make
    for http in https:  # a client given an httpx client leaves closing it to its owner
        asyncio.run(http.aclose())


async def flush_and_close(client: TelemetryClient) -> FlushResult:
    try:
        return await client.flush()
    finally:
        await client.aclose()


@pytest.mark.parametrize("fault", ["lose_request", "lose_answer"])
def test_events_arrive_once_even_when_flush_is_retried(
    server: Backend, wire: Wire, make_client: ClientFactory, fault: str
) -> None:
    client = make_client()
    for sent in range(3):
        assert client.record("broadcast.finished", sent=sent, transport="simulated")
    wire.faults = [fault]

    async def scenario() -> tuple[FlushResult, int, FlushResult, FlushResult]:
        failed = await client.flush()
        rows_after_failure = len(stored(server))
        retried = await client.flush()
        idle = await client.flush()
        await client.aclose()
        return failed, rows_after_failure, retried, idle

    failed, rows_after_failure, retried, idle = run(scenario())
    assert failed.error is not None and failed.delivered == 0 and failed.pending == 3
    # A lost answer means the server did store the batch; a lost request means it did not.
    assert rows_after_failure == (3 if fault == "lose_answer" else 0)
    assert retried.error is None and (retried.delivered, retried.pending) == (3, 0)
    if fault == "lose_answer":
        assert (retried.accepted, retried.duplicates) == (0, 3)  # the same ids, sent again
    else:
        assert (retried.accepted, retried.duplicates) == (3, 0)
    assert idle == FlushResult()

    rows = stored(server)
    assert len(rows) == 3
    assert sorted(row.properties["sent"] for row in rows) == [0, 1, 2]
    sent_ids = [[e["event_id"] for e in json.loads(b)["events"]] for b in wire.bodies]
    assert all(ids == sent_ids[0] for ids in sent_ids)  # every attempt carried the same ids
    assert {row.event_id for row in rows} == set(sent_ids[0])


def test_disabled_client_sends_nothing(
    server: Backend, wire: Wire, make_client: ClientFactory, tmp_path: Path
) -> None:
    client = make_client(enabled=False)
    assert not client.enabled
    assert client.record("app.started", version_major=0) is False
    assert client.pending == 0
    result = run(flush_and_close(client))
    assert result == FlushResult()
    assert wire.bodies == []
    assert stored(server) == []
    assert not (tmp_path / "TGFlow" / "install_id").exists()  # nothing persisted either


def test_denied_properties_never_reach_the_server(
    server: Backend, wire: Wire, make_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    client = make_client()
    personal = {
        "recipient": "alice_in_chains",
        "recipients": 12,
        "text": "Hello-Alice",
        "message_text": "Hello-Alice",
        "phone": "79001234567",
        "username": "alice_in_chains",
        "email": "alice.example.com",
        "chat_id": 777000123,
    }
    not_scalar = {"accounts": ["a", "b"], "options": {"x": 1}, "nothing": None, "raw": b"x"}
    not_short = {"note": "free text with spaces", "code": "X" * 25, "ratio": float("nan")}
    with caplog.at_level(logging.WARNING, "tgflow.telemetry"):
        assert client.record(
            "broadcast.finished",
            sent=5,
            ok=True,
            duration_s=1.5,
            transport="simulated",
            **personal,
            **not_scalar,
            **not_short,
        )
    result = run(flush_and_close(client))
    assert (result.accepted, result.pending) == (1, 0)

    (row,) = stored(server)
    assert row.properties == {"sent": 5, "ok": True, "duration_s": 1.5, "transport": "simulated"}
    (body,) = wire.bodies
    for value in ("alice", "Alice", "7900", "777000123", "spaces", "XXXXX"):
        assert value.encode() not in body
    for key in (*personal, *not_scalar, *not_short):
        assert f'"{key}"'.encode() not in body
    # The log names the dropped keys, never their values.
    assert "recipient" in caplog.text and "alice" not in caplog.text.lower()


def test_invalid_event_names_are_refused(server: Backend, make_client: ClientFactory) -> None:
    client = make_client()
    assert client.record("Broadcast Finished") is False
    assert client.record("x" * 49) is False
    assert client.pending == 0
    assert client.record("account.excluded", reason="PeerFlood")
    run(flush_and_close(client))
    assert [(row.name, row.properties) for row in stored(server)] == [
        ("account.excluded", {"reason": "PeerFlood"})
    ]


def test_events_are_sent_in_batches(
    server: Backend, wire: Wire, make_client: ClientFactory
) -> None:
    clock = FakeClock(datetime(2026, 1, 15, 12, 0, tzinfo=UTC))
    client = make_client(batch_size=2, clock=clock)
    for seq in range(5):
        client.record("broadcast.progress", seq=seq)
        clock.advance(1)
    result = run(flush_and_close(client))
    assert (result.delivered, result.accepted, result.pending) == (5, 5, 0)
    assert [len(json.loads(b)["events"]) for b in wire.bodies] == [2, 2, 1]
    rows = stored(server)
    assert [row.properties["seq"] for row in rows] == [0, 1, 2, 3, 4]
    assert rows[0].occurred_at == datetime(2026, 1, 15, 12, 0, tzinfo=UTC)  # the client's clock
    assert rows[4].occurred_at == datetime(2026, 1, 15, 12, 0, 4, tzinfo=UTC)


def test_the_buffer_is_bounded_and_drops_the_oldest(
    server: Backend, wire: Wire, make_client: ClientFactory
) -> None:
    client = make_client(batch_size=2, max_buffered=4)
    for seq in range(3):
        client.record("broadcast.progress", seq=seq)
    wire.faults = ["lose_request"]

    async def scenario() -> tuple[FlushResult, FlushResult]:
        failed = await client.flush()
        for seq in range(3, 6):  # the buffer holds 4: seq 0 and 1 go
            client.record("broadcast.progress", seq=seq)
        return failed, await flush_and_close(client)

    failed, delivered = run(scenario())
    assert (failed.delivered, failed.pending) == (0, 3)
    assert client.dropped == 2
    assert (delivered.delivered, delivered.pending) == (4, 0)
    assert sorted(row.properties["seq"] for row in stored(server)) == [2, 3, 4, 5]


def test_install_id_is_random_private_and_reused(
    server: Backend, make_client: ClientFactory, tmp_path: Path
) -> None:
    path = tmp_path / "TGFlow" / "install_id"
    first = make_client()
    first.record("app.started")
    assert not path.exists()  # record() does no I/O; the id is made when first sent
    run(flush_and_close(first))
    install_id = path.read_text().strip()
    assert re.fullmatch(r"[0-9a-f]{32}", install_id)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600

    second = make_client()
    second.record("app.started")
    run(flush_and_close(second))
    assert {row.install_id for row in stored(server)} == {install_id}
    assert load_or_create_install_id(path) == install_id

    path.write_text("not-an-id\n")  # damaged: replaced by a fresh random id
    replaced = load_or_create_install_id(path)
    assert replaced != install_id and re.fullmatch(r"[0-9a-f]{32}", replaced)


def test_server_errors_keep_events_and_refusals_drop_them(
    make_client: ClientFactory, tmp_path: Path
) -> None:
    answers = [
        httpx.Response(503, json={"detail": "busy"}),
        httpx.Response(429, headers={"Retry-After": "1"}),
        httpx.Response(
            422,
            json={"title": "Invalid", "status": 422, "detail": "bad", "code": "validation_error"},
        ),
        httpx.Response(200, json={"accepted": 1, "duplicates": 0}),
    ]
    paths: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.path)
        assert "authorization" not in request.headers  # telemetry never sends credentials
        return answers.pop(0)

    client = make_client(http=httpx.AsyncClient(transport=httpx.MockTransport(answer)))
    client.record("app.started")

    async def scenario() -> list[FlushResult]:
        results = [await client.flush(), await client.flush(), await client.flush()]
        client.record("app.started")
        results.append(await flush_and_close(client))
        return results

    busy, limited, refused, fine = run(scenario())
    assert busy.error == "the server answered 503" and busy.pending == 1
    assert limited.error == "the server answered 429" and limited.pending == 1
    assert (refused.rejected, refused.pending, refused.error) == (1, 0, None)
    assert (fine.delivered, fine.accepted) == (1, 1)
    assert paths == [EVENTS_PATH] * 4


def test_bad_arguments_are_refused(make_client: ClientFactory) -> None:
    with pytest.raises(ValueError, match="batch_size"):
        make_client(batch_size=101)
    with pytest.raises(ValueError, match="app_version"):
        make_client(app_version="1.0 beta")
    with pytest.raises(ValueError, match="max_buffered"):
        make_client(batch_size=10, max_buffered=5)
