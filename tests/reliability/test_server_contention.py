"""64 clients fight over one user's small quota on two server worker processes on PostgreSQL
(the workload: tests/helpers/contention.py): ``used + held <= limit`` at every observation, every
commit counted once, every idempotent replay applied once, no 5xx."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.helpers import contention
from tests.helpers.api import bearer
from tests.helpers.reliability_report import Report
from tests.helpers.reliability_server import served

pytestmark = [pytest.mark.postgres, pytest.mark.slow]
LIMIT = contention.LIMIT


def test_reserve_and_commit_contention_on_two_worker_processes(
    tmp_path: Path, reliability: Report
) -> None:
    with (
        served(tmp_path, contention.seed_user) as world,
        httpx.Client(base_url=world.base) as client,
    ):
        token = contention.login(client)
        client.headers.update(bearer(token))
        assert contention.http_quota(client)["limit"] == LIMIT
        services = world.services

        tally = contention.run_workload(world.base, token, services)
        contention.check_run(tally)
        committed = sum(tally.commits)
        assert contention.db_quota(services) == (
            committed,
            sum(tally.abandoned.values()),
            LIMIT,
        )

        # Real time here: nothing expires during the test, so the abandoned holds are rolled
        # back by hand, and then nothing may be held.
        for rid in tally.abandoned:
            r = client.post("/usage/rollback", json={"reservation_id": rid})
            assert r.status_code == 200 and r.json()["status"] == "rolled_back", r.text
        rollbacks = tally.rollbacks + len(tally.abandoned)
        assert contention.db_quota(services) == (committed, 0, LIMIT)
        quota = contention.http_quota(client)
        assert (quota["used"], quota["held"], quota["remaining"]) == (
            committed,
            0,
            LIMIT - committed,
        )
        # One reservation per fresh reserve: no replay made a second one, none was counted twice.
        totals = contention.reservation_totals(services)
        assert set(totals) == {"committed", "rolled_back"}, totals
        assert totals["committed"] == (len(tally.commits), committed), totals
        assert totals["rolled_back"][0] == rollbacks, totals
        assert tally.replays > 0, tally.summary()

    requests = sum(tally.statuses.values())
    reliability.record(
        "reserve/commit contention, 2 workers, PostgreSQL",
        tried=f"{contention.CLIENTS} clients, {requests} requests against limit {LIMIT}: "
        f"{len(tally.commits)} commits, {tally.rollbacks} rollbacks, {len(tally.abandoned)} "
        f"abandoned holds, {tally.replays} idempotent replays, {tally.refused} reserves refused",
        checked=f"used + held ≤ limit at {len(tally.observations)} observations (API and "
        f"database); used = {committed} = the sum of the commits; one reservation per fresh "
        "reserve; every replay answered the first body; no 5xx",
    )
