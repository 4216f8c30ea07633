"""Authentication from the in-process session cache, and how ended sessions leave it."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx
import jwt
import pytest
from sqlalchemy import event, text

from server_stub.errors import TokenExpired
from server_stub.services.session_cache import LiveSession, SessionCache, device_key, session_key
from server_stub.session_bus import PostgresSessionBus
from tests.conftest import ONLY_POSTGRES, Backend, BackendFactory
from tests.helpers.api import assert_problem, bearer, fingerprint, register

LIVE = LiveSession("s1", "u1", "d1", "fp")


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_an_entry_lives_for_the_ttl_only() -> None:
    clock = FakeMonotonic()
    cache = SessionCache(1.0, monotonic=clock)
    cache.put(LIVE, cache.generation)
    assert cache.get("s1") == LIVE
    clock.now += 0.999
    assert cache.get("s1") == LIVE
    clock.now += 0.001
    assert cache.get("s1") is None


def test_a_look_up_older_than_an_invalidation_is_not_stored() -> None:
    # A miss read the session live, then the session ended and was announced before the miss
    # stored its answer: storing it would serve the ended session for a whole TTL.
    cache = SessionCache(60.0)
    generation = cache.generation
    cache.invalidate([session_key("s1")])
    cache.put(LIVE, generation)
    assert cache.get("s1") is None
    cache.put(LIVE, cache.generation)
    assert cache.get("s1") == LIVE


def test_a_device_key_drops_every_session_of_the_device() -> None:
    cache = SessionCache(60.0)
    others = [LiveSession("s2", "u1", "d1", "fp"), LiveSession("s3", "u1", "d2", "fp")]
    for live in (LIVE, *others):
        cache.put(live, cache.generation)
    cache.invalidate([device_key("d1")])
    assert (cache.get("s1"), cache.get("s2"), cache.get("s3")) == (None, None, others[1])


def test_a_suspended_cache_remembers_nothing_until_resumed() -> None:
    cache = SessionCache(60.0)
    cache.put(LIVE, cache.generation)
    cache.suspend()
    assert cache.get("s1") is None
    cache.put(LIVE, cache.generation)
    assert len(cache) == 0
    cache.resume()
    cache.put(LIVE, cache.generation)
    assert cache.get("s1") == LIVE


def test_the_cache_stays_within_its_size() -> None:
    cache = SessionCache(60.0, max_entries=2)
    for i in range(5):
        cache.put(LiveSession(f"s{i}", "u", "d", "fp"), cache.generation)
    assert len(cache) == 2
    assert cache.get("s4") is not None and cache.get("s0") is None


@contextmanager
def _statements(backend: Backend) -> Iterator[list[str]]:
    seen: list[str] = []
    engine = backend.services.ctx.engine

    def record(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def test_a_known_session_authenticates_without_a_query(backend: Backend) -> None:
    assert backend.services.sessions.wait_listening(30)
    reg = register(backend.client)
    auth = backend.services.auth
    with _statements(backend) as seen:
        first = auth.authenticate(reg["token"])
    assert seen, "the first look-up asks the database"
    with _statements(backend) as seen:
        again = auth.authenticate(reg["token"])
    assert seen == []
    assert again.user.id == first.user.id == reg["user"]["id"]
    assert again.device == first.device


def _ends_by_logout(backend: Backend, reg: dict) -> None:
    r = backend.client.post("/auth/logout", headers=bearer(reg["token"]), json={})
    assert r.status_code == 204, r.text


def _ends_by_device_removal(backend: Backend, reg: dict) -> None:
    other = backend.client.post(
        "/auth/login",
        json={
            "email": reg["user"]["email"],
            "password": reg["password"],
            "device_fingerprint": fingerprint(),
        },
    )
    if other.status_code == 403:  # the plan allows one device: remove it from itself
        token = reg["token"]
    else:
        assert other.status_code == 200, other.text
        token = other.json()["token"]
    devices = backend.client.get("/devices", headers=bearer(reg["token"])).json()["devices"]
    current = next(d["id"] for d in devices if d["current"])
    r = backend.client.delete(f"/devices/{current}", headers=bearer(token))
    assert r.status_code == 204, r.text


ENDINGS: dict[str, Callable[[Backend, dict], None]] = {
    "logout": _ends_by_logout,
    "device removal": _ends_by_device_removal,
}


@pytest.mark.parametrize("ending", ENDINGS)
def test_an_ended_session_is_refused_at_once_where_it_ended(backend: Backend, ending: str) -> None:
    reg = {**register(backend.client), "password": "correct horse battery"}
    assert backend.client.get("/license", headers=bearer(reg["token"])).status_code == 200
    ENDINGS[ending](backend, reg)
    assert_problem(
        backend.client.get("/license", headers=bearer(reg["token"])), 401, "token_invalid"
    )


def _wait_until(condition: Callable[[], bool], timeout: float) -> bool:
    """Poll ``condition`` (no fixed sleep decides the outcome) until it holds or time is up."""
    deadline = time.monotonic() + timeout
    idle = threading.Event()
    while not condition():
        if time.monotonic() >= deadline:
            return False
        idle.wait(0.01)
    return True


@ONLY_POSTGRES
@pytest.mark.parametrize("ending", ENDINGS)
def test_another_server_on_the_database_hears_the_session_end(
    make_backend: BackendFactory, ending: str
) -> None:
    here = make_backend()
    # A TTL of a minute: only the announcement can make the other server forget in time.
    there = make_backend(session_cache_ttl_seconds=60)
    assert here.services.sessions.wait_listening(30)
    assert there.services.sessions.wait_listening(30)
    reg = {**register(here.client), "password": "correct horse battery"}
    assert there.client.get("/license", headers=bearer(reg["token"])).status_code == 200
    sid = there.services.auth.authenticate(reg["token"]).session_id
    assert there.services.sessions.cache.get(sid) is not None

    ENDINGS[ending](here, reg)

    assert _wait_until(lambda: there.services.sessions.cache.get(sid) is None, timeout=1.0)
    r: httpx.Response = there.client.get("/license", headers=bearer(reg["token"]))
    assert_problem(r, 401, "token_invalid")


def test_a_token_is_verified_once_and_its_times_on_every_use(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    reg = register(backend.client)
    decodes: list[str] = []
    original = jwt.decode

    def counting(token: str, *args: object, **kwargs: object) -> object:
        decodes.append(token)
        return original(token, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(jwt, "decode", counting)
    auth = backend.services.auth
    first = auth.verify_signature(reg["token"])
    assert auth.verify_signature(reg["token"]) == first
    assert decodes.count(reg["token"]) == 1
    # The remembered signature does not outlive the token: 15 min + the 30 s leeway.
    backend.clock.advance(15 * 60 + 31)
    with pytest.raises(TokenExpired):
        auth.verify_signature(reg["token"])
    assert_problem(
        backend.client.get("/license", headers=bearer(reg["token"])), 401, "token_expired"
    )


@ONLY_POSTGRES
def test_a_listener_that_lost_its_connection_forgets_and_listens_again(
    make_backend: BackendFactory,
) -> None:
    here = make_backend()
    there = make_backend(session_cache_ttl_seconds=60)
    bus = there.services.sessions
    assert isinstance(bus, PostgresSessionBus)
    assert here.services.sessions.wait_listening(30) and bus.wait_listening(30)
    reg = register(here.client)
    sid = there.services.auth.authenticate(reg["token"]).session_id
    lost_pid = bus.listener_pid

    with here.services.ctx.engine.connect() as conn:
        conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": lost_pid})

    # Announcements made while it was gone are lost: what it remembered is forgotten.
    assert _wait_until(
        lambda: bus.listening.is_set() and bus.listener_pid not in (None, lost_pid), 30
    )
    assert bus.cache.get(sid) is None
    assert there.services.auth.authenticate(reg["token"]).session_id == sid
    assert bus.cache.get(sid) is not None
    _ends_by_logout(here, reg)
    assert _wait_until(lambda: bus.cache.get(sid) is None, timeout=1.0)
    assert_problem(there.client.get("/license", headers=bearer(reg["token"])), 401, "token_invalid")
