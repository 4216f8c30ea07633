"""Contention: 64 concurrent clients fight over one user's small monthly quota, on an
in-process server (SQLite and PostgreSQL); the workload is tests/helpers/contention.py.

The contract under test (DESIGN.md, "HTTP contract"): ``used + held <= limit`` at every
observation, every committed message counted exactly once, idempotent replays answer the same
body, abandoned holds are released after the TTL, and no request ever gets a 5xx. The same
workload against two worker processes on PostgreSQL is a scenario of the reliability suite
(tests/reliability/test_server_contention.py).
"""

from __future__ import annotations

from agent.protocol import RESERVATION_TTL_SECONDS
from tests.helpers.api import assert_problem, bearer
from tests.helpers.backend import BackendFactory
from tests.helpers.contention import (
    LIMIT,
    check_run,
    db_quota,
    http_quota,
    login,
    reservation_totals,
    run_workload,
    seed_user,
)


def test_contention_keeps_quota_invariant(make_backend: BackendFactory) -> None:
    backend = make_backend(access_token_ttl_seconds=3600)
    services = backend.services
    seed_user(services)
    token = login(backend.client)
    backend.client.headers.update(bearer(token))
    assert http_quota(backend.client) | {"period_end": None} == {
        "limit": LIMIT,
        "used": 0,
        "held": 0,
        "remaining": LIMIT,
        "period_end": None,
    }

    tally = run_workload(backend.url, token, services)
    check_run(tally)

    committed = sum(tally.commits)
    abandoned = sum(tally.abandoned.values())
    assert db_quota(services) == (committed, abandoned, LIMIT)
    quota = http_quota(backend.client)
    assert (quota["used"], quota["held"]) == (committed, abandoned), quota

    # The abandoned holds outlive the run and are released once their TTL has passed.
    assert RESERVATION_TTL_SECONDS < 16 * 60
    backend.clock.advance(16 * 60)
    assert services.reservations.sweep() == len(tally.abandoned)
    assert services.reservations.sweep() == 0
    assert db_quota(services) == (committed, 0, LIMIT)
    quota = http_quota(backend.client)
    assert (quota["used"], quota["held"], quota["remaining"]) == (committed, 0, LIMIT - committed)
    totals = reservation_totals(services)
    assert "held" not in totals, totals
    assert totals["committed"] == (len(tally.commits), committed), totals
    assert totals["rolled_back"][0] == tally.rollbacks, totals
    assert totals["expired"][0] == len(tally.abandoned), totals

    # An expired hold can no longer be committed; rolling it back is a harmless no-op.
    rid = next(iter(tally.abandoned))
    r = backend.client.post("/usage/commit", json={"reservation_id": rid, "used": 0})
    assert_problem(r, 409, "reservation_expired")
    r = backend.client.post("/usage/rollback", json={"reservation_id": rid})
    assert r.status_code == 200 and r.json()["status"] == "expired", r.text
    assert db_quota(services) == (committed, 0, LIMIT)
