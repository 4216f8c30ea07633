"""The contention workload: 64 clients fight over one user's small monthly quota.

Each client does a seeded random mix of reserve → commit, reserve → rollback, reserve → abandon,
reserve → replayed reserve → commit, and reserve → commit → replayed commit, while a 65th thread
keeps reading the counters (``GET /license`` and the database). Run against an in-process server
(tests/server/test_contention.py) and against two worker processes on PostgreSQL (the reliability
suite, tests/reliability/test_server_contention.py).
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

import httpx
from sqlalchemy import func, select

from server_stub.models import Reservation, UsagePeriod
from server_stub.wiring import Services
from tests.helpers.api import PASSWORD, assert_problem, bearer, fingerprint

SEED = 20260115
CLIENTS = 64
OPS_PER_CLIENT = 5
LIMIT = 500
MAX_MESSAGES = 12
PLAN = "contention"
EMAIL = "contention@example.com"
#: Operation mix; abandons are rarer because each one pins its hold until the TTL.
OPS = ("commit", "rollback", "abandon", "replay_reserve", "replay_commit")
WEIGHTS = (3, 2, 1, 2, 2)


@dataclass
class Tally:
    """Everything the clients saw, merged under one lock."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    statuses: Counter[int] = field(default_factory=Counter)
    server_errors: list[str] = field(default_factory=list)
    commits: list[int] = field(default_factory=list)
    rollbacks: int = 0
    refused: int = 0
    #: Reserves and commits sent again under the same key (each must be applied once).
    replays: int = 0
    #: reservation_id → messages, for holds that were never settled.
    abandoned: dict[str, int] = field(default_factory=dict)
    #: (source, used, held, limit) as read while the clients ran.
    observations: list[tuple[str, int, int, int]] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"{len(self.commits)} commits of {sum(self.commits)} messages, "
            f"{self.rollbacks} rollbacks, {len(self.abandoned)} abandoned, "
            f"{self.refused} refused, {len(self.observations)} observations, "
            f"statuses {dict(self.statuses)}"
        )

    def record(self, r: httpx.Response) -> None:
        with self.lock:
            self.statuses[r.status_code] += 1
            if r.status_code >= 500:
                self.server_errors.append(f"{r.request.method} {r.request.url.path}: {r.text}")


class Api:
    """One client's connection: every response is recorded and must have an expected status."""

    def __init__(self, url: str, token: str, tally: Tally) -> None:
        self.http = httpx.Client(base_url=url, headers=bearer(token), timeout=60)
        self.tally = tally

    def close(self) -> None:
        self.http.close()

    def call(self, method: str, path: str, body: dict[str, Any] | None, *expected: int) -> Any:
        r = self.http.request(method, path, json=body)
        self.tally.record(r)
        assert r.status_code in expected, f"{method} {path} {body} → {r.status_code} {r.text}"
        return r

    def reserve(self, messages: int, cid: str) -> dict[str, Any] | None:
        """A fresh reserve: the new reservation, or None when refused for lack of quota."""
        r = self.call(
            "POST", "/usage/reserve", {"messages": messages, "correlation_id": cid}, 201, 409
        )
        if r.status_code == 409:
            assert_problem(r, 409, "quota_exceeded")
            with self.tally.lock:
                self.tally.refused += 1
            return None
        body: dict[str, Any] = r.json()
        assert body["messages"] == messages and body["status"] == "held", body
        assert 0 <= body["remaining"] <= LIMIT - messages, body
        return body

    def settle(self, path: str, body: dict[str, Any], status: int = 200) -> dict[str, Any]:
        r = self.call("POST", path, body, status)
        result: dict[str, Any] = r.json()
        return result

    def commit(self, rid: str, messages: int, used: int) -> dict[str, Any]:
        body = self.settle("/usage/commit", {"reservation_id": rid, "used": used})
        assert body["status"] == "committed" and body["used"] == used, body
        assert body["messages"] == messages and body["reservation_id"] == rid, body
        with self.tally.lock:
            self.tally.commits.append(used)
        return body

    def conflict(self, path: str, body: dict[str, Any], code: str) -> None:
        r = self.call("POST", path, body, 409)
        assert_problem(r, 409, code)


def client_plan(index: int) -> list[tuple[str, int, int]]:
    """Client ``index``'s (operation, messages, used) list: seeded, so the same on every run and
    independent of what the server answers."""
    rng = random.Random(SEED * 1000 + index)
    plan = []
    for _ in range(OPS_PER_CLIENT):
        op, messages = rng.choices(OPS, WEIGHTS)[0], rng.randint(1, MAX_MESSAGES)
        plan.append((op, messages, min(messages, int(rng.random() * (messages + 1)))))
    return plan


def planned_demand() -> int:
    """Messages the clients would keep for good if every reserve succeeded."""
    return sum(
        messages if op == "abandon" else used
        for index in range(CLIENTS)
        for op, messages, used in client_plan(index)
        if op != "rollback"
    )


def client_ops(api: Api, index: int) -> None:
    for i, (op, messages, used) in enumerate(client_plan(index)):
        cid = f"c{index:02d}-{SEED}-{i:03d}"
        reserved = api.reserve(messages, cid)
        if reserved is None:
            continue
        rid = reserved["reservation_id"]
        if op == "commit":
            api.commit(rid, messages, used)
        elif op == "rollback":
            first = api.settle("/usage/rollback", {"reservation_id": rid})
            assert first["status"] == "rolled_back" and first["used"] == 0, first
            assert api.settle("/usage/rollback", {"reservation_id": rid}) == first
            api.conflict(
                "/usage/commit", {"reservation_id": rid, "used": 0}, "reservation_conflict"
            )
            with api.tally.lock:
                api.tally.rollbacks += 1
        elif op == "abandon":
            with api.tally.lock:
                api.tally.abandoned[rid] = messages
        elif op == "replay_reserve":
            again = api.call(
                "POST", "/usage/reserve", {"messages": messages, "correlation_id": cid}, 200
            ).json()
            assert again == reserved, (again, reserved)
            with api.tally.lock:
                api.tally.replays += 1
            api.conflict(
                "/usage/reserve",
                {"messages": messages + 1, "correlation_id": cid},
                "idempotency_conflict",
            )
            api.commit(rid, messages, used)
        else:  # replay_commit
            first = api.commit(rid, messages, used)
            again = api.settle("/usage/commit", {"reservation_id": rid, "used": used})
            assert again == first, (again, first)
            with api.tally.lock:
                api.tally.replays += 1
            other = used + 1 if used < messages else used - 1
            api.conflict(
                "/usage/commit", {"reservation_id": rid, "used": other}, "reservation_conflict"
            )
            api.conflict("/usage/rollback", {"reservation_id": rid}, "reservation_conflict")


def db_quota(services: Services) -> tuple[int, int, int]:
    """(used, held, limit) of the only usage period, read straight from the database."""
    with services.ctx.read() as session:
        rows = session.execute(
            select(UsagePeriod.used, UsagePeriod.held, UsagePeriod.quota_limit)
        ).all()
    assert len(rows) == 1, rows
    used, held, limit = rows[0]
    return used, held, limit


def http_quota(client: httpx.Client) -> dict[str, Any]:
    r = client.get("/license")
    assert r.status_code == 200, r.text
    quota: dict[str, Any] = r.json()["quota"]
    return quota


def run_workload(url: str, token: str, services: Services) -> Tally:
    """Run the 64 clients and the observer together; re-raise the first failure of any thread."""
    tally = Tally()
    start = threading.Barrier(CLIENTS + 1)
    done = threading.Event()

    def client(index: int) -> None:
        api = Api(url, token, tally)
        try:
            start.wait(timeout=60)
            client_ops(api, index)
        finally:
            api.close()

    def observe() -> None:
        with httpx.Client(base_url=url, headers=bearer(token), timeout=60) as http:
            start.wait(timeout=60)
            while True:
                finished = done.is_set()
                r = http.get("/license")
                tally.record(r)
                assert r.status_code == 200, r.text
                q = r.json()["quota"]
                seen = [("http", q["used"], q["held"], q["limit"]), ("db", *db_quota(services))]
                with tally.lock:
                    tally.observations.extend(seen)
                if finished:  # one last look after every client is done
                    return

    with ThreadPoolExecutor(max_workers=CLIENTS + 1) as pool:
        observer = pool.submit(observe)
        clients = [pool.submit(client, i) for i in range(CLIENTS)]
        wait(clients)
        done.set()
        wait([observer])
    failures = [f.exception() for f in [*clients, observer] if f.exception() is not None]
    if failures:
        raise AssertionError(
            f"{len(failures)} thread(s) failed; first: {failures[0]!r}"
        ) from failures[0]
    return tally


def check_run(tally: Tally) -> None:
    """What must hold for any run, whatever the backend."""
    assert not tally.server_errors, tally.server_errors[:5]
    assert all(status < 500 for status in tally.statuses), tally.statuses
    assert len(tally.observations) >= 4, tally.observations
    for source in ("http", "db"):
        seen = [o for o in tally.observations if o[0] == source]
        assert seen, source
        broken = [o for o in seen if o[1] + o[2] > o[3] or o[3] != LIMIT or min(o[1:]) < 0]
        assert not broken, broken
        # The observer's reads are sequential, and ``used`` only ever grows.
        used = [o[1] for o in seen]
        assert used == sorted(used), used
        assert used[-1] == sum(tally.commits), (used[-1], sum(tally.commits))
    # The demand exceeded the limit, so some reserves must have been refused; and every kind of
    # work got through.
    assert planned_demand() > LIMIT
    assert tally.refused > 0, tally.summary()
    assert tally.commits and tally.rollbacks and tally.abandoned, tally.summary()


def seed_user(services: Services, limit: int = LIMIT) -> None:
    """The one user the clients share, on a plan of ``limit`` messages a month."""
    services.plans.create(PLAN, monthly_quota=limit, max_devices=1, features=[])
    services.auth.create_user(EMAIL, PASSWORD, PLAN)


def login(client: httpx.Client) -> str:
    r = client.post(
        "/auth/login",
        json={"email": EMAIL, "password": PASSWORD, "device_fingerprint": fingerprint()},
    )
    assert r.status_code == 200, r.text
    token: str = r.json()["token"]
    return token


def reservation_totals(services: Services) -> dict[str, tuple[int, int]]:
    """status → (count, sum of used) over all reservations."""
    with services.ctx.read() as session:
        rows = session.execute(
            select(
                Reservation.status, func.count(), func.coalesce(func.sum(Reservation.used), 0)
            ).group_by(Reservation.status)
        ).all()
    return {status: (count, used) for status, count, used in rows}
