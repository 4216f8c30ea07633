"""A reserve is idempotent by ``correlation_id`` in every outcome, refusals included.

DESIGN.md: "A replay of a request that was refused gets the same refusal within the idempotency
window; a refused ``correlation_id`` never later holds quota." Run on SQLite and PostgreSQL.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from sqlalchemy import select

from server_stub.models import UsagePeriod
from tests.helpers.api import PASSWORD, LosingTransport, assert_problem, bearer
from tests.helpers.backend import Backend, BackendFactory

FP = "fp-erin-desktop-0001"
DUPLICATES = 16
ROUNDS = 6


@pytest.fixture
def user(make_backend: BackendFactory) -> tuple[Backend, dict[str, str]]:
    backend = make_backend()
    backend.services.plans.create("ten", monthly_quota=10, max_devices=1, features=[])
    backend.services.auth.create_user("erin@example.com", PASSWORD, "ten")
    r = backend.client.post(
        "/auth/login",
        json={"email": "erin@example.com", "password": PASSWORD, "device_fingerprint": FP},
    )
    assert r.status_code == 200, r.text
    return backend, bearer(r.json()["token"])


def _held(backend: Backend) -> int:
    with backend.services.ctx.read() as session:
        return session.scalars(select(UsagePeriod)).one().held


def _reserve(client: httpx.Client, messages: int, cid: str) -> httpx.Response:
    return client.post("/usage/reserve", json={"messages": messages, "correlation_id": cid})


def test_a_refused_reserve_is_replayed_as_the_same_refusal(
    user: tuple[Backend, dict[str, str]],
) -> None:
    backend, h = user
    with httpx.Client(base_url=backend.url, headers=h) as client:
        blocker = _reserve(client, 8, "blocker-0001")
        assert blocker.status_code == 201
        refused = _reserve(client, 5, "refused-0001")
        assert_problem(refused, 409, "quota_exceeded")
        # The quota becomes free; a replay of the refused request must still be refused.
        rid = blocker.json()["reservation_id"]
        assert client.post("/usage/rollback", json={"reservation_id": rid}).status_code == 200
        replay = _reserve(client, 5, "refused-0001")
        assert_problem(replay, 409, "quota_exceeded")
        assert replay.json()["detail"] == refused.json()["detail"]
        assert replay.json().get("remaining") == refused.json().get("remaining")
        assert _held(backend) == 0
        # The same id with another body is still a conflict, and a new id gets the quota.
        assert_problem(_reserve(client, 4, "refused-0001"), 409, "idempotency_conflict")
        assert _reserve(client, 5, "fresh-0001").status_code == 201


def test_a_lost_refusal_replayed_after_quota_frees_is_still_refused(
    user: tuple[Backend, dict[str, str]],
) -> None:
    backend, h = user
    transport = LosingTransport()
    with httpx.Client(base_url=backend.url, transport=transport, headers=h) as client:
        rid = _reserve(client, 9, "blocker-0002").json()["reservation_id"]
        transport.lose_next = True
        with pytest.raises(httpx.ReadError):
            _reserve(client, 3, "lost-0002")
        client.post("/usage/rollback", json={"reservation_id": rid})
        assert_problem(_reserve(client, 3, "lost-0002"), 409, "quota_exceeded")
        assert _held(backend) == 0


def _race(
    backend: Backend, h: dict[str, str], jobs: list[Callable[[httpx.Client], object]]
) -> list[object]:
    """Run ``jobs`` at once, each on a client of its own, released together by a barrier."""
    barrier = threading.Barrier(len(jobs))
    clients = [httpx.Client(base_url=backend.url, headers=h, timeout=60) for _ in jobs]

    def run(index: int) -> object:
        barrier.wait()
        return jobs[index](clients[index])

    try:
        with ThreadPoolExecutor(len(jobs)) as pool:
            return list(pool.map(run, range(len(jobs))))
    finally:
        for c in clients:
            c.close()


def test_concurrent_duplicates_get_exactly_one_outcome(
    user: tuple[Backend, dict[str, str]],
) -> None:
    """Duplicates race a rollback that frees the quota: all of them must agree."""
    backend, h = user
    for round_ in range(ROUNDS):
        blocker = backend.client.post(
            "/usage/reserve",
            json={"messages": 8, "correlation_id": f"blocker-{round_:04d}"},
            headers=h,
        )
        assert blocker.status_code == 201, blocker.text
        rid = blocker.json()["reservation_id"]
        cid = f"duplicate-{round_:04d}"

        def duplicate(client: httpx.Client, cid: str = cid) -> object:
            r = _reserve(client, 5, cid)
            assert r.status_code in (200, 201, 409), r.text
            body = r.json()
            return ("held", body["reservation_id"]) if r.status_code < 300 else body["code"]

        def free(client: httpx.Client, rid: str = rid) -> object:
            return client.post("/usage/rollback", json={"reservation_id": rid}).status_code

        results = _race(backend, h, [duplicate] * DUPLICATES + [free])
        assert results[-1] == 200
        outcomes = set(results[:-1])
        assert len(outcomes) == 1, f"round {round_}: several outcomes for one id: {outcomes}"
        (outcome,) = outcomes
        # Nothing held that the client was not told of; then free the quota for the next round.
        assert _held(backend) == (5 if outcome != "quota_exceeded" else 0)
        if outcome != "quota_exceeded":
            assert isinstance(outcome, tuple)
            backend.client.post("/usage/rollback", json={"reservation_id": outcome[1]}, headers=h)


def test_concurrent_duplicates_hold_once(user: tuple[Backend, dict[str, str]]) -> None:
    backend, h = user

    def duplicate(client: httpx.Client) -> object:
        r = _reserve(client, 3, "same-0001")
        return r.status_code, r.json().get("reservation_id")

    results = _race(backend, h, [duplicate] * DUPLICATES)
    created = [r for r in results if isinstance(r, tuple) and r[0] == 201]
    assert len(created) == 1, results
    assert {r for r in results} == {created[0], (200, created[0][1])}
    assert _held(backend) == 3


def test_concurrent_duplicate_settles_count_once(user: tuple[Backend, dict[str, str]]) -> None:
    """A commit (or rollback) retried while the first is still running is answered the same."""
    backend, h = user
    for round_, (path, extra) in enumerate(
        [("/usage/commit", {"used": 2}), ("/usage/rollback", {})]
    ):
        r = backend.client.post(
            "/usage/reserve",
            json={"messages": 3, "correlation_id": f"settle-{round_:04d}"},
            headers=h,
        )
        rid = r.json()["reservation_id"]

        def settle(
            client: httpx.Client, path: str = path, extra: dict[str, int] = extra, rid: str = rid
        ) -> object:
            r = client.post(path, json={"reservation_id": rid, **extra})
            return r.status_code, r.text

        results = _race(backend, h, [settle] * DUPLICATES)
        assert len(set(results)) == 1, results
        assert results[0][0] == 200  # type: ignore[index]
    with backend.services.ctx.read() as session:
        period = session.scalars(select(UsagePeriod)).one()
        assert (period.used, period.held) == (2, 0)
