"""POST /telemetry/events: anonymous, idempotent by event_id, validated, and kept for a while."""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pydantic
import pytest
from sqlalchemy import inspect, select

from agent.protocol import (
    TELEMETRY_MAX_APP_VERSION_LENGTH,
    TELEMETRY_MAX_BATCH,
    TELEMETRY_MAX_KEY_LENGTH,
    TELEMETRY_MAX_NAME_LENGTH,
    TELEMETRY_MAX_PROPERTIES,
    TELEMETRY_MAX_STRING_LENGTH,
)
from server_stub.app import _sweep_forever
from server_stub.config import Settings
from server_stub.models import TelemetryEvent
from tests.helpers.api import assert_problem, bearer, register
from tests.helpers.backend import Backend, BackendFactory

INSTALL_ID = uuid.uuid4().hex


def event(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "event_id": str(uuid.uuid4()),
        "name": "broadcast.finished",
        "occurred_at": "2026-01-15T13:30:00+01:00",
        "app_version": "0.1.0",
        "install_id": INSTALL_ID,
        "properties": {"sent": 42, "failed": 1, "ratio": 0.98, "ok": True, "transport": "sim"},
    }
    body.update(overrides)
    return body


def post(backend: Backend, *events: dict[str, Any], **kwargs: Any) -> httpx.Response:
    return backend.client.post("/telemetry/events", json={"events": list(events)}, **kwargs)


def stored(backend: Backend) -> dict[str, TelemetryEvent]:
    with backend.services.ctx.read() as session:
        return {row.event_id: row for row in session.scalars(select(TelemetryEvent))}


def test_a_batch_is_stored_and_counted(make_backend: BackendFactory) -> None:
    backend = make_backend()
    events = [event(), event(name="app.started", properties={}), event(name="account.cooldown")]
    r = post(backend, *events)
    assert r.status_code == 200, r.text
    assert r.json() == {"accepted": 3, "duplicates": 0}

    rows = stored(backend)
    assert set(rows) == {e["event_id"] for e in events}
    first = rows[events[0]["event_id"]]
    assert first.name == "broadcast.finished"
    assert first.properties == events[0]["properties"]
    assert first.occurred_at == datetime(2026, 1, 15, 12, 30, tzinfo=UTC)  # kept in UTC
    assert first.received_at == backend.clock.now()
    assert (first.app_version, first.install_id) == ("0.1.0", INSTALL_ID)
    assert rows[events[1]["event_id"]].properties == {}


def test_the_same_batch_twice_is_stored_once(make_backend: BackendFactory) -> None:
    backend = make_backend()
    events = [event() for _ in range(3)]
    assert post(backend, *events).json() == {"accepted": 3, "duplicates": 0}
    backend.clock.advance(3600)
    again = post(backend, *events)
    assert again.status_code == 200
    assert again.json() == {"accepted": 0, "duplicates": 3}
    rows = stored(backend)
    assert len(rows) == 3
    # The copy changed nothing: the first receipt stands.
    assert {row.received_at for row in rows.values()} == {backend.clock.now() - timedelta(hours=1)}


def test_duplicate_ids_inside_one_batch(make_backend: BackendFactory) -> None:
    backend = make_backend()
    a, b = event(), event()
    same_as_a = event(event_id=a["event_id"].upper(), name="other.event")  # ids ignore case
    r = post(backend, a, b, a, same_as_a)
    assert r.status_code == 200, r.text
    assert r.json() == {"accepted": 2, "duplicates": 2}
    rows = stored(backend)
    assert set(rows) == {a["event_id"], b["event_id"]}
    assert rows[a["event_id"]].name == "broadcast.finished"  # the first copy was stored


def test_concurrent_duplicates_are_counted_not_failed(make_backend: BackendFactory) -> None:
    backend = make_backend()
    events = [event() for _ in range(20)]
    senders = 8
    barrier = threading.Barrier(senders)

    def send(_: int) -> httpx.Response:
        with httpx.Client(base_url=backend.url, timeout=30) as client:
            barrier.wait(timeout=30)
            return client.post("/telemetry/events", json={"events": events})

    with ThreadPoolExecutor(senders) as pool:
        answers = list(pool.map(send, range(senders)))
    assert [r.status_code for r in answers] == [200] * senders, [r.text for r in answers]
    assert sum(r.json()["accepted"] for r in answers) == len(events)
    assert sum(r.json()["duplicates"] for r in answers) == len(events) * (senders - 1)
    assert len(stored(backend)) == len(events)


BAD_EVENTS: dict[str, tuple[Callable[[], Any], list[Any]]] = {
    "name with capitals": (lambda: [event(name="Broadcast.Finished")], [0, "name"]),
    "name too long": (lambda: [event(name="a" * (TELEMETRY_MAX_NAME_LENGTH + 1))], [0, "name"]),
    "event id not a uuid": (lambda: [event(event_id="12345")], [0, "event_id"]),
    "no event id": (
        lambda: [{k: v for k, v in event().items() if k != "event_id"}],
        [0, "event_id"],
    ),
    "naive time": (lambda: [event(occurred_at="2026-01-15T12:00:00")], [0, "occurred_at"]),
    "unix time": (lambda: [event(occurred_at=1768478400)], [0, "occurred_at"]),
    "install id not random hex": (
        lambda: [event(install_id="dana@example.com")],
        [0, "install_id"],
    ),
    "app version too long": (
        lambda: [event(app_version="1" * (TELEMETRY_MAX_APP_VERSION_LENGTH + 1))],
        [0, "app_version"],
    ),
    "unknown field": (lambda: [event(user_id="u-1")], [0, "user_id"]),
    "nested property": (
        lambda: [event(properties={"sent": {"ok": 1}})],
        [0, "properties", "sent"],
    ),
    "list property": (lambda: [event(properties={"sent": [1, 2]})], [0, "properties", "sent"]),
    "null property": (lambda: [event(properties={"sent": None})], [0, "properties", "sent"]),
    "free text property": (
        lambda: [event(properties={"note": "hello there"})],
        [0, "properties", "note"],
    ),
    "long string property": (
        lambda: [event(properties={"code": "x" * (TELEMETRY_MAX_STRING_LENGTH + 1)})],
        [0, "properties", "code"],
    ),
    "digits are not a number": (
        lambda: [event(properties={"code": "0" * (TELEMETRY_MAX_STRING_LENGTH + 1)})],
        [0, "properties", "code"],
    ),
    "bad property key": (
        lambda: [event(properties={"Bad-Key": 1})],
        [0, "properties", "Bad-Key", "[key]"],
    ),
    "long property key": (
        lambda: [event(properties={"k" * (TELEMETRY_MAX_KEY_LENGTH + 1): 1})],
        [0, "properties", "k" * (TELEMETRY_MAX_KEY_LENGTH + 1), "[key]"],
    ),
    "too many properties": (
        lambda: [event(properties={f"p{i}": i for i in range(TELEMETRY_MAX_PROPERTIES + 1)})],
        [0, "properties"],
    ),
    "too many events": (lambda: [event() for _ in range(TELEMETRY_MAX_BATCH + 1)], []),
    "no events": (lambda: [], []),
}


@pytest.mark.parametrize("case", BAD_EVENTS, ids=list(BAD_EVENTS))
def test_bad_input_is_a_validation_problem(make_backend: BackendFactory, case: str) -> None:
    backend = make_backend()
    make_events, where = BAD_EVENTS[case]
    r = backend.client.post("/telemetry/events", json={"events": make_events()})
    problem = assert_problem(r, 422, "validation_error")
    expected = ["body", "events", *where]
    assert any(issue["loc"][: len(expected)] == expected for issue in problem["errors"]), problem
    assert "body.events" in problem["detail"]
    assert problem["instance"] == "/telemetry/events"
    assert "dana@example.com" not in r.text and "hello there" not in r.text  # never echoed
    assert stored(backend) == {}


def test_a_bad_event_refuses_the_whole_batch(make_backend: BackendFactory) -> None:
    backend = make_backend()
    problem = assert_problem(post(backend, event(), event(name="")), 422, "validation_error")
    assert problem["errors"][0]["loc"][:4] == ["body", "events", 1, "name"]
    assert stored(backend) == {}


def test_unparseable_body_is_a_validation_problem(make_backend: BackendFactory) -> None:
    backend = make_backend()
    r = backend.client.post(
        "/telemetry/events", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert_problem(r, 422, "validation_error")


def test_events_name_nobody(make_backend: BackendFactory) -> None:
    backend = make_backend()
    columns = {
        c["name"] for c in inspect(backend.services.ctx.engine).get_columns("telemetry_events")
    }
    assert columns == {
        "event_id",
        "name",
        "occurred_at",
        "received_at",
        "app_version",
        "install_id",
        "properties",
    }

    account = register(backend.client, email="dana@example.com")
    personal = [
        {"sent": 3, "recipient": "alice", "recipients": 12, "message_text": "hi", "phone": "7900"},
        {"username": "alice", "email": "a-b.c", "client_ip": "10.0.0.1", "user_id": "alice"},
    ]
    events = [event(properties=p) for p in personal]
    r = post(backend, *events, headers=bearer(account["token"]))
    assert r.status_code == 200, r.text  # a token is neither needed nor refused
    rows = stored(backend)
    # What may be personal is dropped by the server too, not only by the desktop.
    assert rows[events[0]["event_id"]].properties == {"sent": 3}
    assert rows[events[1]["event_id"]].properties == {}
    everything = json.dumps(
        [
            {c: str(getattr(row, c)) for c in columns} | {"p": row.properties}
            for row in rows.values()
        ]
    )
    for trace in (account["user"]["id"], "dana@example.com", "127.0.0.1", "alice", "7900"):
        assert trace not in everything


def test_no_token_and_a_bad_token_are_both_fine(make_backend: BackendFactory) -> None:
    backend = make_backend()
    assert post(backend, event()).json() == {"accepted": 1, "duplicates": 0}
    forged = post(backend, event(), headers=bearer("not.a.token"))
    assert forged.status_code == 200, forged.text
    assert forged.json() == {"accepted": 1, "duplicates": 0}
    assert len(stored(backend)) == 2


def test_requests_are_rate_limited_per_ip(make_backend: BackendFactory) -> None:
    backend = make_backend(rate_limit_enabled=True, rate_limit_per_ip="3/minute")
    statuses = [post(backend, event()).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    r = post(backend, event())
    assert_problem(r, 429, "rate_limited")
    assert int(r.headers["retry-after"]) >= 1
    assert len(stored(backend)) == 3


def test_the_largest_valid_batch_fits_the_body_limit(make_backend: BackendFactory) -> None:
    backend = make_backend()
    longest_float = -2.2250738585072014e-308  # the longest repr a float has
    properties: dict[str, Any] = {
        f"{i}".rjust(TELEMETRY_MAX_KEY_LENGTH, "k"): "v" * TELEMETRY_MAX_STRING_LENGTH
        for i in range(TELEMETRY_MAX_PROPERTIES - 1)
    }
    properties["f".ljust(TELEMETRY_MAX_KEY_LENGTH, "f")] = longest_float
    events = [
        event(
            name="n" * TELEMETRY_MAX_NAME_LENGTH,
            occurred_at="2026-01-15T13:30:00.123456+01:00",
            app_version="9" * TELEMETRY_MAX_APP_VERSION_LENGTH,
            properties=properties,
        )
        for _ in range(TELEMETRY_MAX_BATCH)
    ]
    body = json.dumps({"events": events}).encode()  # the roomy separators, ", " and ": "
    assert len(body) <= backend.settings.max_body_bytes
    r = backend.client.post(
        "/telemetry/events", content=body, headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"accepted": TELEMETRY_MAX_BATCH, "duplicates": 0}


def test_times_at_the_edge_of_the_calendar_are_kept(make_backend: BackendFactory) -> None:
    backend = make_backend()
    early = event(occurred_at="0001-01-01T00:00:00+05:00")  # before year 1 in UTC
    late = event(occurred_at="9999-12-31T23:59:59-05:00")  # after year 9999 in UTC
    assert post(backend, early, late).json() == {"accepted": 2, "duplicates": 0}
    rows = stored(backend)
    assert rows[early["event_id"]].occurred_at == datetime.min.replace(tzinfo=UTC)
    assert rows[late["event_id"]].occurred_at == datetime.max.replace(tzinfo=UTC)


def test_openapi_documents_an_anonymous_operation(make_backend: BackendFactory) -> None:
    backend = make_backend()
    operation = backend.client.get("/openapi.json").json()["paths"]["/telemetry/events"]["post"]
    assert "security" not in operation
    assert "application/problem+json" in operation["responses"]["422"]["content"]
    assert "application/problem+json" in operation["responses"]["429"]["content"]


# --- retention ----------------------------------------------------------------------------------


@pytest.mark.parametrize("days", [30, 7])
def test_retention_deletes_old_events_and_keeps_recent_ones(
    make_backend: BackendFactory, days: int
) -> None:
    backend = make_backend(**({} if days == 30 else {"telemetry_retention_days": days}))
    assert backend.settings.telemetry_retention_days == days
    old = event()
    post(backend, old)
    backend.clock.advance(timedelta(days=days - 1).total_seconds())
    recent = event()
    post(backend, recent)
    backend.clock.advance(timedelta(days=1).total_seconds())

    assert backend.services.telemetry.purge_expired() == 0  # exactly `days` old: still kept
    backend.clock.advance(1)
    assert backend.services.telemetry.purge_expired() == 1
    assert set(stored(backend)) == {recent["event_id"]}
    # The deleted event's id is free again: a late copy is stored as new.
    assert post(backend, old).json() == {"accepted": 1, "duplicates": 0}


def test_the_periodic_sweeper_applies_retention(make_backend: BackendFactory) -> None:
    backend = make_backend()  # its own sweeper waits an hour: only ours below runs
    post(backend, event())
    backend.clock.advance(timedelta(days=30, seconds=1).total_seconds())

    telemetry = backend.services.telemetry
    purged = threading.Event()
    original = telemetry.purge_expired

    def observed_purge() -> int:
        count = original()
        if count:
            purged.set()
        return count

    telemetry.purge_expired = observed_purge  # type: ignore[method-assign]

    async def run_until_purged() -> None:
        task = asyncio.create_task(_sweep_forever(backend.services, 0.01))
        try:
            assert await asyncio.to_thread(purged.wait, 30), "the sweeper never purged"
        finally:
            task.cancel()

    asyncio.run(run_until_purged())
    assert stored(backend) == {}


def test_retention_setting_is_validated() -> None:
    assert Settings(telemetry_retention_days=1).telemetry_retention_days == 1
    with pytest.raises(pydantic.ValidationError, match="telemetry_retention_days"):
        Settings(telemetry_retention_days=0)
