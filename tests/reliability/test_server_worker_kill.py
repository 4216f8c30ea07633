"""``kill -9`` of a server worker process while usage commits are in flight; the supervisor
starts another and the clients retry under the same reservation ids: no quota lost or doubled.

Each round, every client reserves (one correlation id each), then all commit at once and one
worker is killed. In a "blocked" round the test holds the usage period's row lock, so that every
commit waits inside its database transaction; the worker with commits waiting is killed there,
provably mid-commit. In a "loaded" round the kill lands wherever the commits are when a quarter
of them have been answered.
"""

from __future__ import annotations

import random
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from server_stub.models import Reservation
from tests.helpers import contention
from tests.helpers.api import bearer
from tests.helpers.reliability_report import Report
from tests.helpers.reliability_server import (
    DEADLINE,
    Blocker,
    Retrying,
    Served,
    blocking,
    replace_worker,
    served,
    wait_for,
)

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

SEED = 20261130
CLIENTS = 24
ROUNDS = ("blocked", "loaded", "blocked")
MAX_MESSAGES = 12


def plan() -> dict[tuple[int, int], tuple[int, int]]:
    """(round, client) → (messages reserved, messages used): seeded, the same on every run."""
    rng = random.Random(SEED)
    out = {}
    for key in ((r, c) for r in range(len(ROUNDS)) for c in range(CLIENTS)):
        messages = rng.randint(1, MAX_MESSAGES)
        out[key] = (messages, rng.randint(0, messages))
    return out


PLAN = plan()
#: Exactly the messages reserved over the run: nothing more would fit.
LIMIT = sum(messages for messages, _ in PLAN.values())


@dataclass
class Kill:
    round: str
    victim: int
    replacement: int
    in_flight: int


def reserve(round_: int, api: Retrying, client: int) -> str:
    messages, _ = PLAN[round_, client]
    body = {"messages": messages, "correlation_id": f"kill-{round_}-{client:02d}"}
    reserved = api.request("POST", "/usage/reserve", body, 200, 201).json()
    assert reserved["messages"] == messages and reserved["status"] == "held", reserved
    rid: str = reserved["reservation_id"]
    return rid


def commit(api: Retrying, progress: threading.Semaphore, rid: str, used: int) -> None:
    answer = api.request("POST", "/usage/commit", {"reservation_id": rid, "used": used}, 200)
    body = answer.json()
    assert (body["reservation_id"], body["status"], body["used"]) == (rid, "committed", used)
    progress.release()


def kill_blocked(world: Served, blocker: Blocker, label: str) -> Kill:
    """Every commit waits for the test's lock: kill the worker with the most of them waiting,
    wait until the database has dropped its connections, then let the others through."""
    wait_for(
        "every commit to wait inside its transaction", lambda: len(blocker.waiting()) == CLIENTS
    )
    waiting = {pid: len(blocker.waiting_in(pid)) for pid in world.workers()}
    victim = max(waiting, key=lambda pid: waiting[pid])
    assert waiting[victim] > 0, waiting
    replacement = replace_worker(world, victim)
    blocker.release()
    return Kill(label, victim, replacement, waiting[victim])


def kill_loaded(world: Served, progress: threading.Semaphore, label: str) -> Kill:
    for _ in range(CLIENTS // 4):
        assert progress.acquire(timeout=DEADLINE), "the commits stopped being answered"
    victim = world.workers()[0]
    return Kill(label, victim, replace_worker(world, victim), 0)


def run_round(world: Served, apis: list[Retrying], pool: ThreadPoolExecutor, index: int) -> Kill:
    rids = list(pool.map(partial(reserve, index), apis, range(CLIENTS)))
    # Fewer than every reservation of the run is never held at once: each round's fit.
    used, held, limit = contention.db_quota(world.services)
    assert used + held <= limit == LIMIT
    progress = threading.Semaphore(0)
    label = ROUNDS[index]
    with blocking(world.url) as blocker:
        if label == "blocked":
            assert blocker.lock("SELECT id FROM usage_periods") == 1
        futures: list[Future[None]] = [
            pool.submit(commit, api, progress, rid, PLAN[index, client][1])
            for client, (api, rid) in enumerate(zip(apis, rids, strict=True))
        ]
        if label == "blocked":
            kill = kill_blocked(world, blocker, label)
        else:
            kill = kill_loaded(world, progress, label)
        for future in futures:
            future.result(timeout=DEADLINE)
    return kill


def test_a_worker_killed_mid_commit_loses_and_doubles_nothing(
    tmp_path: Path, reliability: Report
) -> None:
    with served(tmp_path, partial(contention.seed_user, limit=LIMIT)) as world:
        with httpx.Client(base_url=world.base, timeout=DEADLINE) as client:
            token = contention.login(client)
        apis = [Retrying(world.base, bearer(token)) for _ in range(CLIENTS)]
        try:
            with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
                kills = [run_round(world, apis, pool, index) for index in range(len(ROUNDS))]
            retries = sum(api.retries for api in apis)
            quota = apis[0].request("GET", "/license", None, 200).json()["quota"]
        finally:
            for api in apis:
                api.close()
        services = world.services
        with services.ctx.read() as session:
            rows = session.execute(
                select(
                    Reservation.status,
                    func.count(),
                    func.count(func.distinct(Reservation.correlation_id)),
                    func.sum(Reservation.used),
                ).group_by(Reservation.status)
            ).all()
        final = contention.db_quota(services)

    committed = sum(used for _, used in PLAN.values())
    # One reservation per correlation id, every one committed once with what its client used.
    assert [tuple(row) for row in rows] == [("committed", len(PLAN), len(PLAN), committed)]
    assert final == (committed, 0, LIMIT)
    assert (quota["used"], quota["held"], quota["limit"]) == (committed, 0, LIMIT)
    blocked = [k for k in kills if k.round == "blocked"]
    assert all(k.replacement != k.victim for k in kills)
    # Every commit the killed worker held was lost with it and sent again.
    assert retries >= sum(k.in_flight for k in blocked) > 0

    in_flight = sum(k.in_flight for k in blocked)
    reliability.record(
        "kill -9 of a server worker mid-commit, PostgreSQL",
        tried=f"{len(kills)} kills of one of 2 workers (each restarted by the supervisor) under "
        f"{CLIENTS} clients, {len(PLAN)} reserve/commit pairs: {len(blocked)} kills with "
        f"{in_flight} commits provably inside their database transaction, one at a random "
        f"point of the load; {retries} requests retried under the same ids",
        checked=f"used = {committed} = the sum of what the clients committed, held = 0, "
        f"limit {LIMIT} = exactly the messages reserved; one reservation per correlation id, "
        "each committed once",
    )
