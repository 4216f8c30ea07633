"""The reliability suite's network: a real backend process, and a loopback proxy that fails.

:func:`backend_process` starts ``python -m server_stub run`` on a throwaway PostgreSQL database
(:data:`shared_backend`: one for the whole session); :meth:`SeededServer.customer` adds a user on
a plan of a known monthly limit, whose truth (used, held) is read straight from the database.
:class:`FlakyProxy` sits between a client and that server and does to the connection what a bad
network does: drop it, delay it, swallow it (a black hole), or let the request through and lose
the answer.
"""

from __future__ import annotations

import asyncio
import secrets
import threading
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from server_stub.config import Settings
from server_stub.models import Reservation, UsagePeriod
from server_stub.wiring import Services, build_services
from tests.helpers.api import PASSWORD
from tests.helpers.databases import postgres_database
from tests.helpers.server_process import server_process


@dataclass
class Customer:
    """A user of the backend on a plan of their own, and the truth about their quota."""

    server: SeededServer
    email: str
    password: str
    user_id: str

    def quota(self) -> tuple[int, int, int]:
        """(used, held, limit) of the user's period, from the database; zeros before any use."""
        with self.server.services.ctx.read() as session:
            rows = session.execute(
                select(UsagePeriod.used, UsagePeriod.held, UsagePeriod.quota_limit).where(
                    UsagePeriod.user_id == self.user_id
                )
            ).all()
        assert len(rows) <= 1, rows
        if not rows:
            return 0, 0, 0
        used, held, limit = rows[0]
        return used, held, limit

    def committed(self) -> tuple[int, int]:
        """(reservations committed, messages they counted), from the database."""
        with self.server.services.ctx.read() as session:
            count, used = session.execute(
                select(func.count(), func.coalesce(func.sum(Reservation.used), 0)).where(
                    Reservation.user_id == self.user_id, Reservation.status == "committed"
                )
            ).one()
        return count, used

    def login(self, fingerprint: str) -> str:
        """An access token of a new session on ``fingerprint``'s device."""
        body = {"email": self.email, "password": self.password, "device_fingerprint": fingerprint}
        r = httpx.post(f"{self.server.url}/auth/login", json=body, timeout=60)
        assert r.status_code == 200, r.text
        token: str = r.json()["token"]
        return token


@dataclass
class SeededServer:
    """A backend process and a direct line to its database."""

    url: str
    pid: int
    services: Services
    #: Pins of the backend's auth and license keys (what the desktop is configured with).
    pins: tuple[str, ...]

    def customer(self, limit: int) -> Customer:
        """A new user on a new plan of ``limit`` messages a month (several devices allowed)."""
        name = "reliability-" + secrets.token_hex(4)
        self.services.plans.create(name, monthly_quota=limit, max_devices=5, features=[])
        email = f"{name}@example.com"
        user = self.services.auth.create_user(email, PASSWORD, name)
        return Customer(self, email, PASSWORD, user.id)


@contextmanager
def backend_process(
    tmp: Path, *, workers: int = 2, env: Mapping[str, str] | None = None
) -> Iterator[SeededServer]:
    """A backend process (``workers`` workers) on its own PostgreSQL database."""
    with postgres_database() as url:
        settings = Settings(data_dir=tmp / "server", database_url=url)
        services = build_services(settings)
        try:
            pins = tuple(key.pin for key in services.ctx.keys.published())
            log = tmp / "server.log"
            with server_process(url, settings.data_dir, log, workers=workers, env=env) as (
                base,
                pid,
            ):
                yield SeededServer(base, pid, services, pins)
        finally:
            services.ctx.engine.dispose()


def shared_customer(limit: int) -> Any:
    """A test module's ``customer`` fixture: a new user with a ``limit``-message plan on the
    backend the scenarios share (``shared_server``, tests/reliability/conftest.py;
    ``customer = shared_customer(LIMIT)`` at module level)."""

    @pytest.fixture(scope="session")
    def customer(shared_server: SeededServer) -> Customer:
        return shared_server.customer(limit)

    return customer


# --- the proxy ------------------------------------------------------------------------------------


class Fault(StrEnum):
    """What the proxy does to the traffic from now on."""

    #: Forward everything.
    PASS = "pass"
    #: Forward everything, each chunk late by :attr:`FlakyProxy.delay` seconds.
    DELAY = "delay"
    #: Reset every connection (open ones at once, new ones when they arrive): the request never
    #: reaches the server.
    DROP = "drop"
    #: Accept, read and swallow: no byte reaches the server, no answer comes back (the client
    #: times out).
    BLACKHOLE = "blackhole"
    #: Forward the request, then reset the connection when the answer comes: the server acted,
    #: the client does not know it.
    LOSE_ANSWER = "lose_answer"


_CHUNK = 65536


class FlakyProxy:
    """A TCP proxy on a free loopback port to ``upstream`` (``http://host:port``), on an asyncio
    loop in a thread of its own. Set :attr:`fault` at any time; it applies to every chunk from
    then on, on open (keep-alive) connections too. :attr:`seen` counts what it did."""

    def __init__(self, upstream: str, *, delay: float = 0.2) -> None:
        address = httpx.URL(upstream)
        self._upstream = (address.host, address.port or 80)
        self.fault = Fault.PASS
        self.delay = delay
        self.seen: Counter[str] = Counter()
        self._writers: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self.url = ""

    def __enter__(self) -> FlakyProxy:
        self._thread.start()
        server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._accept, "127.0.0.1", 0), self._loop
        ).result(30)
        self._server = server
        port = server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    def __exit__(self, *exc: object) -> None:
        async def close() -> None:
            for writer in list(self._writers):
                writer.transport.abort()
            if self._server is not None:
                self._server.close()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(30)
        self._loop.close()

    def set(self, fault: Fault) -> None:
        """From now on, do ``fault``; a DROP also resets the connections open now (a cut)."""
        self.fault = fault
        if fault is Fault.DROP:

            def cut() -> None:
                for writer in list(self._writers):
                    writer.transport.abort()

            self._loop.call_soon_threadsafe(cut)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.seen["connections"] += 1
        if self.fault is Fault.DROP:
            self.seen["dropped"] += 1
            writer.transport.abort()
            return
        self._writers.add(writer)
        upstream: asyncio.StreamWriter | None = None
        try:
            up_reader, upstream = await asyncio.open_connection(*self._upstream)
            self._writers.add(upstream)
            await asyncio.gather(
                self._pipe(reader, upstream, towards_server=True, client=writer),
                self._pipe(up_reader, writer, towards_server=False, client=writer),
            )
        except (ConnectionError, OSError):
            pass
        finally:
            for w in (writer, upstream):
                if w is not None:
                    self._writers.discard(w)
                    w.transport.abort()

    async def _pipe(
        self,
        source: asyncio.StreamReader,
        sink: asyncio.StreamWriter,
        *,
        towards_server: bool,
        client: asyncio.StreamWriter,
    ) -> None:
        while data := await source.read(_CHUNK):
            fault = self.fault
            if fault is Fault.DROP:
                self.seen["dropped"] += 1
                break
            if fault is Fault.BLACKHOLE and towards_server:
                self.seen["blackholed"] += 1
                continue  # swallowed: the client waits for an answer that never comes
            if fault is Fault.LOSE_ANSWER and not towards_server:
                self.seen["answers_lost"] += 1
                break
            if fault is Fault.DELAY:
                self.seen["delayed"] += 1
                await asyncio.sleep(self.delay)  # the fault itself: a slow link
            sink.write(data)
            with suppress(ConnectionError):
                await sink.drain()
        # One side ended or the fault cut it: the whole connection goes, as on a real cut.
        client.transport.abort()
        sink.transport.abort()
