"""Two server processes on one PostgreSQL database behave as one server (docs/server.md,
"Scale-out"): a session ended through one is refused by the other within a second, and they
count rate limits together through Redis."""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest
import redis

from tests.helpers.api import PASSWORD, bearer, fingerprint, register
from tests.helpers.databases import REDIS_URL, postgres_database, redis_or_skip
from tests.helpers.server_process import server_process

#: The promise: a logout or a device removal on one server is honoured by the others within it.
HONOURED_WITHIN = 1.0
#: Long enough that only the announcement, never the TTL, can end the other's cached session.
CACHE_TTL = "60"


def _hits(client: httpx.Client) -> float:
    found = re.search(
        r'tgflow_session_lookups_total\{result="hit"\} (\S+)', client.get("/metrics").text
    )
    return float(found.group(1)) if found else 0.0


def _cached_on(client: httpx.Client, token: str, timeout: float = 30) -> None:
    """Make ``client``'s server answer for ``token`` from its cache, and prove that it does.

    A server remembers nothing until its listener is connected, which may come a little after
    it answers ``/healthz``: the check is repeated until then, within a bounded deadline.
    """
    deadline = time.monotonic() + timeout
    while True:
        before = _hits(client)
        assert client.get("/license", headers=bearer(token)).status_code == 200
        if _hits(client) > before:
            return
        assert time.monotonic() < deadline, "the server never answered from its cache"


def _refused_within(client: httpx.Client, token: str, seconds: float) -> float:
    """Seconds until ``client``'s server refuses ``token``; fails if it still serves it after."""
    start = time.monotonic()
    while True:
        status = client.get("/license", headers=bearer(token)).status_code
        elapsed = time.monotonic() - start
        if status == 401:
            return elapsed
        assert status == 200
        assert elapsed < seconds, f"still served {elapsed:.2f} s after the session ended"


def _logout(client: httpx.Client, session: dict) -> None:
    assert client.post("/auth/logout", headers=bearer(session["token"]), json={}).status_code == 204


def _remove_device(client: httpx.Client, session: dict) -> None:
    devices = client.get("/devices", headers=bearer(session["token"])).json()["devices"]
    current = next(d["id"] for d in devices if d["current"])
    r = client.delete(f"/devices/{current}", headers=bearer(session["token"]))
    assert r.status_code == 204, r.text


ENDINGS: dict[str, Callable[[httpx.Client, dict], None]] = {
    "logout": _logout,
    "device removal": _remove_device,
}


def _two_servers(
    stack: ExitStack, tmp_path: Path, env: dict[str, str]
) -> tuple[httpx.Client, httpx.Client]:
    """Two server processes on one throwaway PostgreSQL database and one data dir (one set of
    keys), each with one worker; clients of both, all closed by ``stack``."""
    url = stack.enter_context(postgres_database())
    data_dir = tmp_path / "data"
    clients = []
    # One after the other: the first creates the schema and the keys the second uses.
    for name in ("a", "b"):
        base, _pid = stack.enter_context(
            server_process(url, data_dir, tmp_path / f"{name}.log", workers=1, env=env)
        )
        clients.append(stack.enter_context(httpx.Client(base_url=base, timeout=30)))
    return clients[0], clients[1]


@pytest.mark.postgres
@pytest.mark.slow
def test_two_server_processes_honour_a_session_end_within_a_second(tmp_path: Path) -> None:
    with ExitStack() as stack:
        a, b = _two_servers(stack, tmp_path, {"TGFLOW_SESSION_CACHE_TTL_SECONDS": CACHE_TTL})
        for name, end in ENDINGS.items():
            session = register(a, fp=fingerprint())
            _cached_on(b, session["token"])
            end(a, session)
            took = _refused_within(b, session["token"], HONOURED_WITHIN)
            print(f"{name} on A: refused by B after {took * 1000:.0f} ms")
        # The other way round: a new login of the last user, cached on A, logged out on B.
        again = a.post(
            "/auth/login",
            json={
                "email": session["user"]["email"],
                "password": PASSWORD,
                "device_fingerprint": fingerprint(),
            },
        )
        assert again.status_code == 200, again.text
        token = again.json()["token"]
        _cached_on(a, token)
        _logout(b, {"token": token})
        took = _refused_within(a, token, HONOURED_WITHIN)
        print(f"logout on B: refused by A after {took * 1000:.0f} ms")


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.slow
def test_two_server_processes_share_rate_limits_through_redis(tmp_path: Path) -> None:
    redis_or_skip()
    prefix = "tgflow-test-" + secrets.token_hex(6)
    env = {
        "TGFLOW_RATE_LIMIT_ENABLED": "true",
        "TGFLOW_RATE_LIMIT_PER_TOKEN": "3/minute",
        "TGFLOW_REDIS_URL": REDIS_URL,
        "TGFLOW_REDIS_KEY_PREFIX": prefix,
    }
    try:
        with ExitStack() as stack:
            a, b = _two_servers(stack, tmp_path, env)
            token = bearer(register(a)["token"])
            statuses = [c.get("/license", headers=token).status_code for c in (a, b, a, b)]
            # Counted by each process alone, every request would pass (two each).
            assert statuses == [200, 200, 200, 429]
            assert b.get("/license", headers=bearer(register(b)["token"])).status_code == 200
    finally:
        store = redis.Redis.from_url(REDIS_URL)
        for key in store.scan_iter(f"{prefix}*"):
            store.delete(key)
