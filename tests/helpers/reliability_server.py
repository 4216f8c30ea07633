"""The reliability suite's server side: real server processes on a throwaway PostgreSQL
database, the database's view of who is blocked where (so that a process is killed while its
work is provably in flight), clients that retry under their idempotency keys, and a fake RuStore
whose purchases and refunds reach the webhook inbox."""

from __future__ import annotations

import json
import os
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import psycopg
from sqlalchemy import select

from server_stub.config import Settings
from server_stub.fake_providers.delivery import serving
from server_stub.fake_providers.rustore_fake import FakeRuStore
from server_stub.points_models import PointsTransaction
from server_stub.services.points.ledger import Kind
from server_stub.webhook_models import WEBHOOK_PENDING, WebhookEvent
from server_stub.wiring import Services, build_services
from tests.helpers.databases import POSTGRES_ADMIN_URL, postgres_database
from tests.helpers.rustore import COINS, TOKEN, rustore_settings
from tests.helpers.server_process import server_process, worker_pids

T = TypeVar("T")

#: How long any wait on another process's state may take on a loaded machine.
DEADLINE = 90.0
#: Seconds between two looks at another process's state (a poll, never a pacing sleep).
_POLL = 0.02
#: How soon PostgreSQL gives up on a statement whose client died (see :func:`throwaway_database`).
CLIENT_CHECK = "100ms"


def wait_for(what: str, check: Callable[[], T | None], timeout: float = DEADLINE) -> T:
    """Poll ``check`` (the observable state of another process) until it answers something
    truthy, and return that; fail with ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, f"gave up after {timeout:.0f} s waiting for {what}"
        time.sleep(_POLL)  # another process's state has no event to wait on


@contextmanager
def throwaway_database() -> Iterator[str]:
    """A database of our own on which a killed client's statement dies with it.

    A backend waiting on a lock does not notice its client is gone; once the lock came free it
    would run the dead client's statement (committing it, outside a transaction). With
    ``client_connection_check_interval`` it checks the socket while it waits and gives up, so
    that what a killed process left in flight is provably lost, never finished behind its back.
    """
    with postgres_database() as url:
        name = url.rsplit("/", 1)[1]
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
            conn.execute(
                f'ALTER DATABASE "{name}" SET client_connection_check_interval = {CLIENT_CHECK!r}'
            )
        yield url


@dataclass
class Served:
    """Two server worker processes (one uvicorn supervisor) on a throwaway database, and the
    test's own services on the same database (to seed and to read what was written)."""

    url: str
    base: str
    supervisor: int
    services: Services

    def workers(self) -> list[int]:
        return worker_pids(self.supervisor)


@contextmanager
def served(
    tmp_path: Path,
    seed: Callable[[Services], None],
    env: dict[str, str] | None = None,
    workers: int = 2,
) -> Iterator[Served]:
    """``seed`` the database, then serve it with ``workers`` worker processes."""
    with throwaway_database() as url:
        settings = Settings(data_dir=tmp_path / "data", database_url=url)
        services = build_services(settings)
        try:
            seed(services)
            log = tmp_path / "server.log"
            with server_process(url, settings.data_dir, log, workers=workers, env=env) as (
                base,
                pid,
            ):
                world = Served(url, base, pid, services)
                wait_for(f"{workers} workers", lambda: len(world.workers()) == workers)
                yield world
        finally:
            services.ctx.engine.dispose()


def kill(url: str, pid: int) -> None:
    """``kill -9`` process ``pid``, then wait until the database has ended what it left open
    (its connections to ``url``'s database gone, their transactions rolled back)."""
    ports = tcp_ports(pid)
    os.kill(pid, signal.SIGKILL)
    wait_for("the killed process's transactions to end", lambda: connections_gone(url, ports))


def replace_worker(world: Served, victim: int) -> int:
    """``kill -9`` one worker; returns the pid of the one the supervisor starts in its place."""
    before = set(world.workers())
    assert victim in before, (victim, before)
    kill(world.url, victim)

    def replacement() -> int | None:
        now = set(world.workers())
        fresh = now - before
        return fresh.pop() if victim not in now and len(fresh) == 1 else None

    return wait_for("the supervisor to start a worker in place of the killed one", replacement)


# --- who is blocked where -----------------------------------------------------------------------


def tcp_ports(pid: int) -> set[int]:
    """The local ports of ``pid``'s TCP sockets (Linux /proc): the ``client_port`` by which
    PostgreSQL knows that process's connections."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except FileNotFoundError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            cells = line.split()
            if cells[9] in inodes:
                ports.add(int(cells[1].rsplit(":", 1)[1], 16))
    return ports


@dataclass
class Blocker:
    """A transaction of the test's own holding row locks: whoever needs those rows waits inside
    their own database transaction until :meth:`release`."""

    url: str
    conn: psycopg.Connection[Any] = field(init=False)

    def __post_init__(self) -> None:
        self.conn = psycopg.connect(self.url)

    def lock(self, query: str, params: dict[str, Any] | None = None) -> int:
        """Lock the rows ``query`` (a SELECT) finds; returns how many."""
        return len(self.conn.execute(query + " FOR UPDATE", params).fetchall())

    def waiting(self) -> list[tuple[int, str]]:
        """(client port, query) of every backend of this database waiting for a lock."""
        with psycopg.connect(self.url, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT client_port, query FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
                " AND pid <> %s",
                (self.conn.info.backend_pid,),
            ).fetchall()
        return [(int(port), str(query)) for port, query in rows]

    def waiting_in(self, pid: int) -> list[str]:
        """The queries of process ``pid`` that wait for a lock."""
        ports = tcp_ports(pid)
        return [query for port, query in self.waiting() if port in ports]

    def release(self) -> None:
        self.conn.rollback()

    def close(self) -> None:
        self.conn.close()


@contextmanager
def blocking(url: str) -> Iterator[Blocker]:
    blocker = Blocker(url)
    try:
        yield blocker
    finally:
        blocker.close()


def connections_gone(url: str, ports: set[int]) -> bool:
    """No backend of ``url``'s database serves a connection from one of ``ports`` any more."""
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT client_port FROM pg_stat_activity WHERE datname = current_database()"
        ).fetchall()
    return not {int(port) for (port,) in rows if port is not None} & ports


# --- clients that retry ------------------------------------------------------------------------


@dataclass
class Retrying:
    """A client whose requests are retried, unchanged, when the connection fails: safe only
    because every request it makes is idempotent (a key, a reservation id)."""

    base: str
    headers: dict[str, str]
    retries: int = 0
    http: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.http = httpx.Client(base_url=self.base, headers=self.headers, timeout=DEADLINE)

    def request(self, method: str, path: str, body: Any, *expected: int) -> httpx.Response:
        deadline = time.monotonic() + DEADLINE
        while True:
            try:
                r = self.http.request(method, path, json=body)
            except httpx.TransportError:  # the worker died under the request
                self.retries += 1
                assert time.monotonic() < deadline, f"{method} {path} never got through"
                continue
            assert r.status_code in expected, f"{method} {path} {body} → {r.status_code} {r.text}"
            return r

    def close(self) -> None:
        self.http.close()


# --- RuStore behind the inbox ------------------------------------------------------------------


def tgflow_env(values: Mapping[str, Any]) -> dict[str, str]:
    """Settings fields as the ``TGFLOW_*`` environment of a server process."""
    return {f"TGFLOW_{name.upper()}": str(value) for name, value in values.items()}


@dataclass
class Store:
    """A fake RuStore on a loopback port, and what a server needs to trust its notifications."""

    fake: FakeRuStore
    key: bytes

    def settings(self) -> dict[str, Any]:
        return {
            **rustore_settings(self.fake.base_url, self.fake.app_id, self.key),
            "webhook_poll_seconds": 0.05,
        }

    def buy(self, user_id: str) -> tuple[str, list[bytes]]:
        """A paid purchase of 100 points: its invoice and the two notifications RuStore sends
        (EXECUTED, then PAID)."""
        invoice = self.fake.create_purchase(COINS.id, user_id=user_id)
        before = len(self.fake.sent)
        self.fake.pay(invoice)
        return invoice, self.fake.sent[before:]

    def refund(self, invoice: str) -> bytes:
        return self.fake.set_status(invoice, "REFUNDED", notify=False)

    def env(self, **more: Any) -> dict[str, str]:
        """The store's settings, and ``more``, as a server process's environment."""
        return tgflow_env({**self.settings(), **more})

    @staticmethod
    def post(http: httpx.Client, bodies: list[bytes]) -> list[str]:
        """Deliver RuStore's notifications, each stored anew; returns their event ids."""
        for body in bodies:
            headers = {"Content-Type": "application/json"}
            r = http.post("/webhooks/rustore", content=body, headers=headers)
            assert r.status_code == 200, r.text
            assert r.json() == {"received": True, "duplicate": False}, r.text
        return [json.loads(body)["id"] for body in bodies]


@contextmanager
def rustore() -> Iterator[Store]:
    key = os.urandom(32)
    fake = FakeRuStore(public_token=TOKEN, console_key=key)
    with serving(fake):
        yield Store(fake, key)


@dataclass(frozen=True)
class Books:
    """What the database says the webhook inbox and the store did."""

    services: Services

    def events(self) -> list[WebhookEvent]:
        with self.services.ctx.read() as session:
            return list(session.scalars(select(WebhookEvent).order_by(WebhookEvent.seq)))

    def pending(self) -> int:
        return sum(e.status in WEBHOOK_PENDING for e in self.events())

    def booked(self, kind: Kind) -> Counter[str]:
        """How many points transactions of ``kind`` each store purchase has."""
        with self.services.ctx.read() as session:
            refs = session.scalars(
                select(PointsTransaction.external_ref).where(PointsTransaction.kind == kind.value)
            ).all()
        return Counter(ref for ref in refs if ref)
