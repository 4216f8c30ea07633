"""The per-token rate limit (``rate_limit_per_token``, 20/second) of a real server process.

Two workers share the count through Redis, as in production. One signed-in client sends 21
requests within one second round three open connections (either worker may hold each): the first 20
pass and the 21st is refused 429 with ``Retry-After`` and problem details. After waiting what
``Retry-After`` said (the client's side of the contract under test), the next request passes.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
import redis

from agent.protocol import ErrorCode
from server_stub.config import Settings
from tests.helpers.api import bearer, fingerprint
from tests.helpers.databases import REDIS_URL, redis_or_skip
from tests.helpers.reliability_network import SeededServer, backend_process
from tests.helpers.reliability_report import Report

#: The limit under test, read from the one place it is declared.
PER_SECOND = int(Settings.model_fields["rate_limit_per_token"].default.split("/")[0])
#: Bursts tried before giving up on a machine too loaded to send 21 requests in one second.
ATTEMPTS = 3


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeededServer]:
    redis_or_skip()
    prefix = "tgflow-reliability-" + fingerprint()[-12:]
    env = {
        "TGFLOW_RATE_LIMIT_ENABLED": "true",
        "TGFLOW_REDIS_URL": REDIS_URL,
        "TGFLOW_REDIS_KEY_PREFIX": prefix,
    }
    try:
        with backend_process(tmp_path_factory.mktemp("limited"), env=env) as server:
            yield server
    finally:
        client = redis.Redis.from_url(REDIS_URL)
        for key in client.scan_iter(f"{prefix}*"):
            client.delete(key)


#: Connections the burst goes round: opened beforehand (on /healthz, which is not limited) so
#: that the second is spent on requests; each accepted by whichever worker the kernel chose.
CONNECTIONS = 3


def _burst(url: str, token: str, count: int) -> tuple[list[httpx.Response], float]:
    """``count`` requests, one after another, round the connections; and the seconds from the
    first request's start to the last answer."""
    clients = [
        httpx.Client(base_url=url, headers=bearer(token), timeout=30) for _ in range(CONNECTIONS)
    ]
    try:
        for client in clients:
            assert client.get("/healthz").status_code == 200
        responses = []
        started = time.monotonic()
        for i in range(count):
            responses.append(clients[i % CONNECTIONS].get("/license"))
        return responses, time.monotonic() - started
    finally:
        for client in clients:
            client.close()


@pytest.mark.postgres
@pytest.mark.redis
def test_rate_limit_refuses_request_21_within_one_second(
    limited: SeededServer, reliability: Report
) -> None:
    assert PER_SECOND == 20
    customer = limited.customer(100)
    for _attempt in range(1, ATTEMPTS + 1):
        token = customer.login(fingerprint())  # a new session: a bucket of its own
        responses, elapsed = _burst(limited.url, token, PER_SECOND + 1)
        if elapsed < 1.0:
            break
    else:
        pytest.fail(f"the machine never sent {PER_SECOND + 1} requests within one second")
    statuses = [r.status_code for r in responses]
    assert statuses == [200] * PER_SECOND + [429], statuses
    refused = responses[-1]
    assert refused.headers["content-type"].startswith("application/problem+json")
    problem = refused.json()
    assert problem["status"] == 429 and problem["code"] == ErrorCode.RATE_LIMITED, problem
    retry_after = int(refused.headers["Retry-After"])
    assert retry_after == 1, retry_after  # the window is one second

    time.sleep(retry_after)  # what the 429 asked the client to do: the behaviour under test
    after, _ = _burst(limited.url, token, 1)
    assert after[0].status_code == 200, after[0].text
    reliability.record(
        "rate limit at request 21",
        tried=(
            f"{PER_SECOND + 1} GET /license with one token in {elapsed:.2f} s (attempt "
            f"{_attempt} of {ATTEMPTS}), round {CONNECTIONS} connections, to a 2-worker server "
            f"counting through Redis ({PER_SECOND}/second per token)"
        ),
        checked=(
            f"requests 1–{PER_SECOND} answered 200, request {PER_SECOND + 1} answered 429 "
            f"rate_limited (problem details, Retry-After: {retry_after}); after Retry-After the "
            "next request answered 200"
        ),
        lost="nothing",
    )
