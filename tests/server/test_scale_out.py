"""Two server processes on one PostgreSQL database behave as one server (docs/server.md,
"Scale-out"): a session ended through one is refused by the other within a second."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest

from tests.helpers.api import PASSWORD, bearer, fingerprint, register
from tests.helpers.databases import postgres_database
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


@pytest.mark.postgres
@pytest.mark.slow
def test_two_server_processes_honour_a_session_end_within_a_second(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"  # one data dir: the same keys on both servers
    env = {"TGFLOW_SESSION_CACHE_TTL_SECONDS": CACHE_TTL}
    with ExitStack() as stack:
        url = stack.enter_context(postgres_database())
        # One after the other: the first creates the schema and the keys the second uses.
        a_url, _ = stack.enter_context(
            server_process(url, data_dir, tmp_path / "a.log", workers=1, env=env)
        )
        b_url, _ = stack.enter_context(
            server_process(url, data_dir, tmp_path / "b.log", workers=1, env=env)
        )
        a = stack.enter_context(httpx.Client(base_url=a_url, timeout=30))
        b = stack.enter_context(httpx.Client(base_url=b_url, timeout=30))
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
