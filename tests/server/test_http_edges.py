"""The HTTP edge: problem details everywhere, rate limits, body cap, headers, CORS, probes."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import httpx
import pytest
import redis
from cryptography.hazmat.primitives.asymmetric import ec

from agent.marketplace import public_jwk
from tests.helpers.api import assert_problem, bearer, register
from tests.helpers.backend import BackendFactory
from tests.helpers.databases import REDIS_URL, redis_or_skip


def test_unknown_route_and_method_are_problems(make_backend: BackendFactory) -> None:
    backend = make_backend()
    assert_problem(backend.client.get("/no/such/route"), 404, "not_found")
    r = backend.client.put("/auth/login", json={})
    assert_problem(r, 405, "method_not_allowed")
    assert "POST" in r.headers["allow"]


def test_malformed_json_is_a_validation_problem(make_backend: BackendFactory) -> None:
    backend = make_backend()
    for content in (b"{not json", b"[]", b"null", "\u00ff".encode("latin-1")):
        r = backend.client.post(
            "/auth/login", content=content, headers={"Content-Type": "application/json"}
        )
        assert_problem(r, 422, "validation_error")


def test_oversized_bodies_are_refused(make_backend: BackendFactory) -> None:
    backend = make_backend(max_body_bytes=2048)
    big = {"email": "a@example.com", "password": "x" * 4096, "device_fingerprint": "f" * 32}
    assert_problem(backend.client.post("/auth/login", json=big), 413, "payload_too_large")

    def chunks() -> Iterator[bytes]:  # no Content-Length: the cap must hold while streaming
        yield b'{"email": "a@example.com", "password": "'
        for _ in range(8):
            yield b"y" * 512
        yield b'", "device_fingerprint": "ffffffffffffffffffff"}'

    r = backend.client.post(
        "/auth/login", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert_problem(r, 413, "payload_too_large")


def test_security_headers(make_backend: BackendFactory) -> None:
    plain = make_backend()
    r = plain.client.get("/healthz")
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["referrer-policy"] == "no-referrer"
    assert "strict-transport-security" not in r.headers
    secure = make_backend(public_url="https://licenses.example.com")
    r = secure.client.get("/healthz")
    assert r.headers["strict-transport-security"].startswith("max-age=")


def test_cors_allows_only_configured_origins(make_backend: BackendFactory) -> None:
    backend = make_backend(cors_origins="https://portal.example.com")
    preflight = {"Access-Control-Request-Method": "POST"}
    r = backend.client.options(
        "/auth/login", headers={"Origin": "https://portal.example.com", **preflight}
    )
    assert r.headers["access-control-allow-origin"] == "https://portal.example.com"
    r = backend.client.options(
        "/auth/login", headers={"Origin": "https://evil.example.com", **preflight}
    )
    assert "access-control-allow-origin" not in r.headers
    # The profile's PATCH and the money-moving POSTs' Idempotency-Key pass a preflight.
    r = backend.client.options(
        "/user/update",
        headers={
            "Origin": "https://portal.example.com",
            "Access-Control-Request-Method": "PATCH",
            "Access-Control-Request-Headers": "authorization, content-type, idempotency-key",
        },
    )
    assert r.status_code == 200, r.text
    assert "PATCH" in r.headers["access-control-allow-methods"]
    assert "idempotency-key" in r.headers["access-control-allow-headers"].lower()


def test_health_and_metrics(make_backend: BackendFactory) -> None:
    backend = make_backend()
    r = backend.client.get("/healthz")
    assert r.status_code == 200
    assert r.json()["status"] == "ok" and r.json()["database"] == "ok"
    backend.client.get("/no/such/route")
    metrics = backend.client.get("/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    text = metrics.text
    assert 'tgflow_http_requests_total{method="GET",route="/healthz",status="200"} 1.0' in text
    assert 'route="<unmatched>",status="404"' in text  # raw paths never become labels
    assert "tgflow_http_request_duration_seconds_bucket" in text


def test_openapi_documents_every_route_and_problem(make_backend: BackendFactory) -> None:
    backend = make_backend()
    spec = backend.client.get("/openapi.json").json()
    paths = spec["paths"]
    for path in (
        "/auth/register",
        "/auth/login",
        "/auth/refresh",
        "/auth/logout",
        "/license",
        "/devices",
        "/devices/{device_id}",
        "/usage/reserve",
        "/usage/commit",
        "/usage/rollback",
        "/.well-known/jwks.json",
        "/healthz",
        "/metrics",
    ):
        assert path in paths, path
    reserve = paths["/usage/reserve"]["post"]
    assert "application/problem+json" in reserve["responses"]["409"]["content"]
    assert "application/problem+json" in reserve["responses"]["422"]["content"]
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert backend.client.get("/docs").status_code == 200


# --- rate limits --------------------------------------------------------------------------------


def test_ip_limit_without_a_token(make_backend: BackendFactory) -> None:
    backend = make_backend(rate_limit_enabled=True, rate_limit_per_ip="3/minute")
    statuses = [backend.client.get("/license").status_code for _ in range(4)]
    assert statuses == [401, 401, 401, 429]
    r = backend.client.get("/license")
    assert_problem(r, 429, "rate_limited")
    assert 1 <= int(r.headers["retry-after"]) <= 60
    assert backend.client.get("/healthz").status_code == 200  # probes are never limited
    # Nor are the providers' webhooks (signed; here unsigned, so refused, but never 429).
    hooks = [backend.client.post("/webhooks/stripe", content=b"{}").status_code for _ in range(4)]
    assert 429 not in hooks and len(set(hooks)) == 1 and hooks[0] in (401, 403)
    assert 'tgflow_rate_limited_total{scope="ip"} 2.0' in backend.client.get("/metrics").text


def test_token_limit_is_per_token(make_backend: BackendFactory) -> None:
    backend = make_backend(
        rate_limit_enabled=True, rate_limit_per_ip="100/minute", rate_limit_per_token="3/minute"
    )
    a = bearer(register(backend.client)["token"])
    b = bearer(register(backend.client)["token"])
    assert [backend.client.get("/license", headers=a).status_code for _ in range(4)] == [
        200,
        200,
        200,
        429,
    ]
    assert backend.client.get("/license", headers=b).status_code == 200
    # A forged token buys no bucket of its own: it counts against the IP.
    forged = bearer(a["Authorization"].split()[1][:-4] + "AAAA")
    assert backend.client.get("/license", headers=forged).status_code == 401


def test_the_wallet_is_limited_per_ip_even_with_tokens(make_backend: BackendFactory) -> None:
    backend = make_backend(
        rate_limit_enabled=True,
        rate_limit_per_ip="100/minute",
        rate_limit_per_token="100/minute",
        rate_limit_wallet_per_ip="3/minute",
    )
    a = bearer(register(backend.client)["token"])
    b = bearer(register(backend.client)["token"])
    seen = [backend.client.get("/points/balance", headers=h).status_code for h in (a, b, a, b)]
    assert seen == [200, 200, 200, 429]  # one IP, two accounts: one bucket
    assert_problem(backend.client.get("/user/profile", headers=a), 429, "rate_limited")
    # The rest of the API keeps its own limits.
    assert backend.client.get("/license", headers=a).status_code == 200


def test_marketplace_tokens_are_limited_per_token_not_per_ip(make_backend: BackendFactory) -> None:
    backend = make_backend(
        rate_limit_enabled=True, rate_limit_per_ip="100/minute", rate_limit_per_token="3/minute"
    )
    market = backend.services.marketplace
    tenants = [
        market.create_backend(name, public_jwk(ec.generate_private_key(ec.SECP256R1())))
        for name in ("Acme", "Globex")
    ]
    admin = bearer(tenants[0].admin_token.token)
    user = bearer(market.issue_user_token(tenants[0].backend.id).token)
    other = bearer(tenants[1].admin_token.token)
    for headers, path in ((admin, "/marketplace/catalog"), (user, "/marketplace/installed")):
        statuses = [backend.client.get(path, headers=headers).status_code for _ in range(4)]
        assert statuses == [200, 200, 200, 429]
    # Counted per IP, the fourth request of each would have passed; another tenant's token
    # from the same address has a bucket of its own.
    assert backend.client.get("/marketplace/catalog", headers=other).status_code == 200
    assert 'tgflow_rate_limited_total{scope="token"} 2.0' in backend.client.get("/metrics").text


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    redis_or_skip()
    prefix = "tgflow-test-" + secrets.token_hex(6)
    yield prefix
    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(f"{prefix}*"):
        client.delete(key)


@pytest.mark.redis
def test_limits_are_shared_through_redis(make_backend: BackendFactory, redis_prefix: str) -> None:
    options = {
        "rate_limit_enabled": True,
        "rate_limit_per_ip": "3/minute",
        "redis_url": REDIS_URL,
        "redis_key_prefix": redis_prefix,
    }
    first = make_backend(**options)
    second = make_backend(**options)
    statuses = [
        first.client.get("/license").status_code,
        second.client.get("/license").status_code,
        first.client.get("/license").status_code,
        second.client.get("/license").status_code,
    ]
    assert statuses == [401, 401, 401, 429]
    assert list(redis.Redis.from_url(REDIS_URL).scan_iter(f"{redis_prefix}*"))


def test_unreachable_redis_does_not_lock_everyone_out(make_backend: BackendFactory) -> None:
    backend = make_backend(rate_limit_enabled=True, redis_url="redis://127.0.0.1:1/0")
    assert backend.client.get("/license").status_code == 401
    assert isinstance(backend.client, httpx.Client)
