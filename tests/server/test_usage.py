"""/usage and /license semantics: idempotency, conflicts, expiry, periods, the lease."""

from __future__ import annotations

from datetime import timedelta

import httpx
import jwt
import pytest
from sqlalchemy import select

from agent.protocol import LEASE_AUDIENCE
from server_stub.models import UsagePeriod
from server_stub.services.periods import period_bounds
from tests.helpers.api import PASSWORD, LosingTransport, assert_problem, bearer, fingerprint
from tests.helpers.backend import Backend, BackendFactory

DANA_FP = "fp-dana-laptop-0001"


@pytest.fixture
def user(make_backend: BackendFactory) -> tuple[Backend, dict[str, str]]:
    backend = make_backend()
    backend.services.plans.create("ten", monthly_quota=10, max_devices=1, features=["broadcast"])
    backend.services.auth.create_user("dana@example.com", PASSWORD, "ten")
    r = backend.client.post(
        "/auth/login",
        json={"email": "dana@example.com", "password": PASSWORD, "device_fingerprint": DANA_FP},
    )
    assert r.status_code == 200
    return backend, bearer(r.json()["token"])


def _relogin(backend: Backend) -> dict[str, str]:
    """A fresh access token for Dana's device (the old one expires with a 15-minute hold)."""
    r = backend.client.post(
        "/auth/login",
        json={"email": "dana@example.com", "password": PASSWORD, "device_fingerprint": DANA_FP},
    )
    assert r.status_code == 200, r.text
    return bearer(r.json()["token"])


def _quota(backend: Backend, headers: dict[str, str]) -> dict[str, int]:
    r = backend.client.get("/license", headers=headers)
    assert r.status_code == 200, r.text
    quota: dict[str, int] = r.json()["quota"]
    assert quota["used"] + quota["held"] <= quota["limit"]
    return quota


def _reserve(backend: Backend, headers: dict[str, str], messages: int, cid: str):  # type: ignore[no-untyped-def]
    return backend.client.post(
        "/usage/reserve", json={"messages": messages, "correlation_id": cid}, headers=headers
    )


def test_reserve_commit_counts_only_what_was_used(user: tuple[Backend, dict[str, str]]) -> None:
    backend, h = user
    r = _reserve(backend, h, 6, "batch-0001")
    assert r.status_code == 201
    res = r.json()
    assert res["messages"] == 6 and res["remaining"] == 4 and res["status"] == "held"
    assert _quota(backend, h) | {} == {**_quota(backend, h), "used": 0, "held": 6, "remaining": 4}
    r = backend.client.post(
        "/usage/commit", json={"reservation_id": res["reservation_id"], "used": 4}, headers=h
    )
    assert r.status_code == 200
    assert r.json() == {
        "reservation_id": res["reservation_id"],
        "status": "committed",
        "messages": 6,
        "used": 4,
        "remaining": 6,
    }
    q = _quota(backend, h)
    assert (q["used"], q["held"], q["remaining"]) == (4, 0, 6)


def test_reserve_is_idempotent_by_correlation_id(user: tuple[Backend, dict[str, str]]) -> None:
    backend, h = user
    first = _reserve(backend, h, 3, "batch-same")
    replay = _reserve(backend, h, 3, "batch-same")
    assert first.status_code == 201 and replay.status_code == 200
    assert replay.json() == first.json()
    assert _quota(backend, h)["held"] == 3  # held once, not twice
    assert_problem(_reserve(backend, h, 4, "batch-same"), 409, "idempotency_conflict")
    # After the idempotency window the key may be used afresh.
    backend.clock.advance(15 * 60 + 1)
    again = _reserve(backend, h, 4, "batch-same")
    assert again.status_code == 201
    assert again.json()["reservation_id"] != first.json()["reservation_id"]


def test_commit_and_rollback_are_idempotent_and_exclusive(
    user: tuple[Backend, dict[str, str]],
) -> None:
    backend, h = user
    rid = _reserve(backend, h, 5, "batch-cc").json()["reservation_id"]
    c1 = backend.client.post("/usage/commit", json={"reservation_id": rid, "used": 2}, headers=h)
    c2 = backend.client.post("/usage/commit", json={"reservation_id": rid, "used": 2}, headers=h)
    assert c1.status_code == c2.status_code == 200 and c1.json() == c2.json()
    assert _quota(backend, h)["used"] == 2  # counted once
    assert_problem(
        backend.client.post("/usage/commit", json={"reservation_id": rid, "used": 3}, headers=h),
        409,
        "reservation_conflict",
    )
    assert_problem(
        backend.client.post("/usage/rollback", json={"reservation_id": rid}, headers=h),
        409,
        "reservation_conflict",
    )

    rid2 = _reserve(backend, h, 5, "batch-rr").json()["reservation_id"]
    r1 = backend.client.post("/usage/rollback", json={"reservation_id": rid2}, headers=h)
    r2 = backend.client.post("/usage/rollback", json={"reservation_id": rid2}, headers=h)
    assert r1.status_code == r2.status_code == 200 and r1.json() == r2.json()
    assert r1.json()["status"] == "rolled_back" and r1.json()["used"] == 0
    assert_problem(
        backend.client.post("/usage/commit", json={"reservation_id": rid2, "used": 1}, headers=h),
        409,
        "reservation_conflict",
    )
    q = _quota(backend, h)
    assert (q["used"], q["held"]) == (2, 0)


def test_commit_more_than_reserved_is_refused(user: tuple[Backend, dict[str, str]]) -> None:
    backend, h = user
    rid = _reserve(backend, h, 2, "batch-over").json()["reservation_id"]
    assert_problem(
        backend.client.post("/usage/commit", json={"reservation_id": rid, "used": 3}, headers=h),
        422,
        "validation_error",
    )
    assert _quota(backend, h)["held"] == 2  # nothing changed


def test_quota_exceeded_holds_nothing(user: tuple[Backend, dict[str, str]]) -> None:
    backend, h = user
    assert _reserve(backend, h, 8, "batch-aa").status_code == 201
    body = assert_problem(_reserve(backend, h, 3, "batch-bb"), 409, "quota_exceeded")
    assert body["remaining"] == 2
    q = _quota(backend, h)
    assert (q["held"], q["remaining"]) == (8, 2)
    assert _reserve(backend, h, 2, "batch-cc").status_code == 201
    metrics = backend.client.get("/metrics").text
    assert "tgflow_quota_refusals_total 1.0" in metrics
    assert "tgflow_reservations_open 2.0" in metrics


def test_unknown_or_foreign_reservation_is_not_found(make_backend: BackendFactory) -> None:
    backend = make_backend()
    tokens = []
    for email in ("e1@example.com", "e2@example.com"):
        backend.services.auth.create_user(email, PASSWORD, None)
        r = backend.client.post(
            "/auth/login",
            json={"email": email, "password": PASSWORD, "device_fingerprint": fingerprint()},
        )
        tokens.append(bearer(r.json()["token"]))
    rid = _reserve(backend, tokens[0], 1, "batch-mine").json()["reservation_id"]
    for body in ({"reservation_id": rid, "used": 1}, {"reservation_id": "nope", "used": 1}):
        assert_problem(
            backend.client.post("/usage/commit", json=body, headers=tokens[1]), 404, "not_found"
        )
    assert_problem(
        backend.client.post("/usage/rollback", json={"reservation_id": rid}, headers=tokens[1]),
        404,
        "not_found",
    )


def test_expired_hold_is_released_lazily(user: tuple[Backend, dict[str, str]]) -> None:
    backend, h = user
    rid = _reserve(backend, h, 10, "batch-exp").json()["reservation_id"]
    assert_problem(_reserve(backend, h, 1, "batch-xx"), 409, "quota_exceeded")
    backend.clock.advance(15 * 60 + 1)
    assert _reserve(backend, h, 1, "batch-yy").status_code == 201  # the stale hold went away
    assert_problem(
        backend.client.post("/usage/commit", json={"reservation_id": rid, "used": 10}, headers=h),
        409,
        "reservation_expired",
    )
    rb = backend.client.post("/usage/rollback", json={"reservation_id": rid}, headers=h)
    assert rb.status_code == 200 and rb.json()["status"] == "expired"
    q = _quota(backend, h)
    assert (q["used"], q["held"]) == (0, 1)


def test_sweeper_releases_expired_holds(user: tuple[Backend, dict[str, str]]) -> None:
    backend, h = user
    _reserve(backend, h, 4, "batch-s1")
    _reserve(backend, h, 5, "batch-s2")
    backend.clock.advance(14 * 60)
    assert backend.services.reservations.sweep() == 0
    backend.clock.advance(2 * 60)
    assert backend.services.reservations.sweep() == 2
    with backend.services.ctx.read() as session:
        period = session.scalars(select(UsagePeriod)).one()
        assert (period.used, period.held) == (0, 0)
    assert "tgflow_reservations_expired_total 2.0" in backend.client.get("/metrics").text


def test_a_new_period_starts_with_a_fresh_quota(user: tuple[Backend, dict[str, str]]) -> None:
    backend, h = user
    rid = _reserve(backend, h, 10, "batch-p1").json()["reservation_id"]
    backend.client.post("/usage/commit", json={"reservation_id": rid, "used": 10}, headers=h)
    first = _quota(backend, h)
    assert first["remaining"] == 0
    backend.clock.advance(32 * 24 * 3600)
    h = _relogin(backend)  # the access token expired meanwhile
    second = _quota(backend, h)
    assert (second["used"], second["held"], second["remaining"]) == (0, 0, 10)
    assert second["period_end"] > first["period_end"]
    assert _reserve(backend, h, 10, "batch-p2").status_code == 201
    with backend.services.ctx.read() as session:
        periods = session.scalars(select(UsagePeriod).order_by(UsagePeriod.period_start)).all()
        assert [(p.used, p.held) for p in periods] == [(10, 0), (0, 10)]


def test_period_bounds_follow_the_anchor_day() -> None:
    from datetime import UTC, datetime

    anchor = datetime(2026, 1, 31, 10, 0, tzinfo=UTC)
    assert period_bounds(anchor, datetime(2026, 2, 15, tzinfo=UTC)) == (
        datetime(2026, 1, 31, 10, 0, tzinfo=UTC),
        datetime(2026, 2, 28, 10, 0, tzinfo=UTC),
    )
    start, end = period_bounds(anchor, datetime(2026, 3, 1, tzinfo=UTC))
    assert start == datetime(2026, 2, 28, 10, 0, tzinfo=UTC)
    assert end == datetime(2026, 3, 31, 10, 0, tzinfo=UTC)
    assert period_bounds(anchor, anchor) == (anchor, datetime(2026, 2, 28, 10, 0, tzinfo=UTC))


def test_license_lease_is_signed_for_this_device(user: tuple[Backend, dict[str, str]]) -> None:
    backend, h = user
    body = backend.client.get("/license", headers=h).json()
    assert body["status"] == "active" and body["plan"] == "ten"
    assert body["features"] == ["broadcast"]
    key = backend.services.ctx.keys.signing_key("auth")
    lease = jwt.decode(
        body["lease"],
        key.public_key,
        algorithms=["RS256"],
        audience=LEASE_AUDIENCE,
        issuer="tgflow",
        options={"verify_exp": False, "verify_iat": False, "verify_nbf": False},
    )
    assert lease["device"] == body["device_binding"]["fingerprint"]
    assert lease["plan"] == "ten" and lease["status"] == "active"
    assert lease["quota"]["limit"] == 10
    assert lease["exp"] - lease["iat"] == 72 * 3600
    assert jwt.get_unverified_header(body["lease"])["kid"] == key.kid


def test_user_without_a_plan_has_an_inactive_license(make_backend: BackendFactory) -> None:
    backend = make_backend(default_plan="no-such-plan")
    r = backend.client.post(
        "/auth/register",
        json={"email": "f@example.com", "password": PASSWORD, "device_fingerprint": fingerprint()},
    )
    h = bearer(r.json()["token"])
    body = backend.client.get("/license", headers=h).json()
    assert body["status"] == "inactive" and body["plan"] is None
    assert body["quota"] == {"limit": 0, "used": 0, "held": 0, "remaining": 0, "period_end": None}
    assert_problem(_reserve(backend, h, 1, "batch-none"), 403, "license_inactive")


def test_reserve_input_is_validated(user: tuple[Backend, dict[str, str]]) -> None:
    backend, h = user
    for body in (
        {"messages": 0, "correlation_id": "batch-00"},
        {"messages": -1, "correlation_id": "batch-00"},
        {"messages": 1, "correlation_id": "short"},
        {"messages": 1, "correlation_id": "bad id with spaces"},
        {"messages": "many", "correlation_id": "batch-00"},
        {"messages": 1},
    ):
        assert_problem(
            backend.client.post("/usage/reserve", json=body, headers=h), 422, "validation_error"
        )
    assert _quota(backend, h)["held"] == 0


def test_reservation_expiry_is_fifteen_minutes(user: tuple[Backend, dict[str, str]]) -> None:
    backend, h = user
    res = _reserve(backend, h, 1, "batch-ttl").json()
    from datetime import datetime

    expires = datetime.fromisoformat(res["expires_at"].replace("Z", "+00:00"))
    assert expires - backend.clock.now() == timedelta(minutes=15)


def test_lost_responses_are_safe_to_retry(user: tuple[Backend, dict[str, str]]) -> None:
    backend, h = user
    transport = LosingTransport()
    with httpx.Client(base_url=backend.url, transport=transport, headers=h) as client:

        def post_retrying(path: str, body: dict[str, object]) -> httpx.Response:
            transport.lose_next = True
            with pytest.raises(httpx.ReadError):
                client.post(path, json=body)
            return client.post(path, json=body)

        r = post_retrying("/usage/reserve", {"messages": 4, "correlation_id": "lost-0001"})
        assert r.status_code == 200  # a replay: the first request did reserve
        rid = r.json()["reservation_id"]
        assert _quota(backend, h)["held"] == 4
        r = post_retrying("/usage/commit", {"reservation_id": rid, "used": 3})
        assert r.status_code == 200 and r.json()["used"] == 3
        q = _quota(backend, h)
        assert (q["used"], q["held"]) == (3, 0)  # counted exactly once
        r = post_retrying("/usage/rollback", {"reservation_id": rid})
        assert_problem(r, 409, "reservation_conflict")


def test_a_refused_commit_still_releases_the_expired_hold(
    user: tuple[Backend, dict[str, str]],
) -> None:
    backend, h = user
    rid = _reserve(backend, h, 3, "late-0001").json()["reservation_id"]
    backend.clock.advance(16 * 60)
    h = _relogin(backend)
    assert_problem(
        backend.client.post("/usage/commit", json={"reservation_id": rid, "used": 3}, headers=h),
        409,
        "reservation_expired",
    )
    with backend.services.ctx.read() as session:
        assert session.scalars(select(UsagePeriod)).one().held == 0
    # And a refused reserve keeps the release it made, too.
    _reserve(backend, h, 9, "late-0002")
    backend.clock.advance(16 * 60)
    h = _relogin(backend)
    assert_problem(_reserve(backend, h, 11, "late-0003"), 409, "quota_exceeded")
    with backend.services.ctx.read() as session:
        assert session.scalars(select(UsagePeriod)).one().held == 0
