"""The points wallet over HTTP on SQLite and PostgreSQL: balance, history pages, spends and
holds for the customer; an operator's balance, history and audited adjustment."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from server_stub.db import transaction
from server_stub.models import AuditEntry, Plan
from server_stub.services.points.ledger import Kind
from server_stub.services.staff import Role
from tests.helpers.api import assert_problem, bearer, register
from tests.helpers.backend import Backend
from tests.helpers.staff import new_staff


@pytest.fixture
def account(backend: Backend) -> dict[str, Any]:
    body = register(backend.client)
    return {"id": body["user"]["id"], "headers": bearer(body["token"])}


def grant(backend: Backend, user_id: str, amount: int) -> None:
    backend.services.points.credit(user_id, amount, kind=Kind.GRANT, actor="system")


def test_a_spend_answers_what_was_committed(backend: Backend, account: dict[str, Any]) -> None:
    client, h = backend.client, account["headers"]
    assert client.get("/points/balance", headers=h).json() == {
        "balance": 0,
        "held": 0,
        "shortfall": 0,
    }
    grant(backend, account["id"], 100)
    body = {"amount": 30, "idempotency_key": "gen-0001", "reason": "one picture"}
    first = client.post("/points/spend", headers=h, json=body)
    assert first.status_code == 200, first.text
    assert first.json()["entry"]["amount"] == -30 and first.json()["replayed"] is False
    assert first.json()["balance"] == {"balance": 70, "held": 0, "shortfall": 0}
    again = client.post("/points/spend", headers=h, json=body)
    assert again.json()["replayed"] is True and again.json()["entry"] == first.json()["entry"]
    other = client.post("/points/spend", headers=h, json={**body, "amount": 31})
    assert_problem(other, 409, "idempotency_conflict")
    too_much = client.post(
        "/points/spend", headers=h, json={"amount": 71, "idempotency_key": "gen-0002"}
    )
    assert_problem(too_much, 409, "insufficient_points")
    assert client.get("/points/balance", headers=h).json()["balance"] == 70


@pytest.mark.parametrize(
    "body",
    [
        {"amount": 0, "idempotency_key": "gen-0001"},
        {"amount": 1.5, "idempotency_key": "gen-0001"},
        {"amount": "5", "idempotency_key": "gen-0001"},
        {"amount": 5, "idempotency_key": "short"},
        {"amount": 5},
        {"amount": 5, "idempotency_key": "gen-0001", "extra": 1},
    ],
)
def test_bad_spends_are_422(backend: Backend, account: dict[str, Any], body: Any) -> None:
    r = backend.client.post("/points/spend", headers=account["headers"], json=body)
    assert_problem(r, 422, "validation_error")


def test_the_history_pages_newest_first_and_filters(
    backend: Backend, account: dict[str, Any]
) -> None:
    client, h = backend.client, account["headers"]
    for _ in range(3):
        grant(backend, account["id"], 10)
        backend.clock.advance(1)
    for i in range(2):
        body = {"amount": 5, "idempotency_key": f"spend-000{i}"}
        assert client.post("/points/spend", headers=h, json=body).status_code == 200
        backend.clock.advance(1)
    page = client.get("/points/history", headers=h, params={"limit": 3}).json()
    assert [e["amount"] for e in page["entries"]] == [-5, -5, 10]
    assert [e["balance_after"] for e in page["entries"]] == [20, 25, 30]
    rest = client.get(
        "/points/history", headers=h, params={"limit": 3, "cursor": page["next_cursor"]}
    ).json()
    assert [e["amount"] for e in rest["entries"]] == [10, 10] and rest["next_cursor"] is None
    spends = client.get("/points/history", headers=h, params={"kind": "spend"}).json()
    assert [e["kind"] for e in spends["entries"]] == ["spend", "spend"]
    bad = client.get("/points/history", headers=h, params={"cursor": "bm90LWEtY3Vyc29y"})
    assert_problem(bad, 422, "validation_error")


def test_a_hold_is_committed_in_part_or_released(backend: Backend, account: dict[str, Any]) -> None:
    client, h = backend.client, account["headers"]
    grant(backend, account["id"], 50)
    r = client.post("/points/holds", headers=h, json={"amount": 20, "idempotency_key": "job-0001"})
    assert r.status_code == 201, r.text
    hold = r.json()
    assert (hold["state"], hold["balance"]["balance"], hold["balance"]["held"]) == ("held", 30, 20)
    done = client.post(f"/points/holds/{hold['id']}/commit", headers=h, json={"used": 5})
    assert done.status_code == 200, done.text
    assert (done.json()["state"], done.json()["balance"]) == (
        "committed",
        {"balance": 45, "held": 0, "shortfall": 0},
    )
    assert_problem(
        client.post(f"/points/holds/{hold['id']}/release", headers=h), 409, "reservation_conflict"
    )
    second = client.post(
        "/points/holds", headers=h, json={"amount": 45, "idempotency_key": "job-0002"}
    ).json()
    released = client.post(f"/points/holds/{second['id']}/release", headers=h)
    assert released.json()["balance"]["balance"] == 45
    stranger = bearer(register(backend.client)["token"])
    assert_problem(
        client.post(f"/points/holds/{second['id']}/commit", headers=stranger), 404, "not_found"
    )


def test_an_admin_adjusts_with_a_reason_and_it_is_audited(
    backend: Backend, account: dict[str, Any]
) -> None:
    client = backend.client
    admin = new_staff(client, backend.services, backend.clock, Role.ADMIN)
    support = new_staff(client, backend.services, backend.clock, Role.SUPPORT)
    url = f"/staff/points/{account['id']}"
    body = {"delta": 25, "reason": "goodwill after an outage", "idempotency_key": "adj-0001"}
    assert_problem(
        client.post(f"{url}/adjust", headers=support.headers, json=body), 403, "forbidden"
    )
    r = client.post(f"{url}/adjust", headers=admin.headers, json=body)
    assert r.status_code == 200, r.text
    assert r.json()["balance"]["balance"] == 25 and r.json()["entry"]["kind"] == "adjustment"
    take = {"delta": -26, "reason": "typo", "idempotency_key": "adj-0002"}
    assert_problem(
        client.post(f"{url}/adjust", headers=admin.headers, json=take), 409, "insufficient_points"
    )
    no_reason = {"delta": 5, "idempotency_key": "adj-0003"}
    assert_problem(
        client.post(f"{url}/adjust", headers=admin.headers, json=no_reason), 422, "validation_error"
    )
    nobody = client.post("/staff/points/no-such-user/adjust", headers=admin.headers, json=body)
    assert_problem(nobody, 404, "not_found")
    seen = client.get(f"{url}/balance", headers=support.headers)
    assert seen.status_code == 200 and seen.json()["balance"] == 25
    history = client.get(f"{url}/history", headers=support.headers).json()
    assert [e["reason"] for e in history["entries"]] == ["goodwill after an outage"]
    with transaction(backend.services.ctx.read) as session:
        audited = session.scalars(
            select(AuditEntry).where(AuditEntry.action == "points.adjust")
        ).all()
    assert [(a.actor, a.details["points"]) for a in audited] == [(f"staff:{admin.id}", 25)]
    # The customer sees the operator's change in the history like any other.
    mine = client.get("/points/history", headers=account["headers"]).json()
    assert mine["entries"][0]["kind"] == "adjustment"


def sell_messages(backend: Backend, rate: int) -> None:
    with transaction(backend.services.ctx.write) as session:
        plan = session.scalar(select(Plan).where(Plan.name == backend.settings.default_plan))
        assert plan is not None
        plan.topup_messages_per_point = rate


def test_points_buy_messages_of_the_current_period(
    backend: Backend, account: dict[str, Any]
) -> None:
    client, h = backend.client, account["headers"]
    grant(backend, account["id"], 10)
    body = {"points": 4, "idempotency_key": "topup-0001"}
    assert_problem(client.post("/usage/topup", headers=h, json=body), 422, "validation_error")
    sell_messages(backend, 25)
    before = client.get("/license", headers=h).json()["quota"]
    r = client.post("/usage/topup", headers=h, json=body)
    assert r.status_code == 200, r.text
    done = r.json()
    assert (done["messages"], done["balance"]["balance"], done["entry"]["kind"]) == (
        100,
        6,
        "topup",
    )
    after = client.get("/license", headers=h).json()["quota"]
    assert after["limit"] == before["limit"] + 100 == done["quota"]["limit"]
    assert after["remaining"] == before["remaining"] + 100
    # Once per key, even if the rate changes meanwhile; not more points than there are.
    sell_messages(backend, 1)
    again = client.post("/usage/topup", headers=h, json=body).json()
    assert (again["replayed"], again["messages"], again["quota"]["limit"]) == (
        True,
        100,
        after["limit"],
    )
    too_many = client.post(
        "/usage/topup", headers=h, json={"points": 7, "idempotency_key": "topup-0002"}
    )
    assert_problem(too_many, 409, "insufficient_points")
    assert client.get("/license", headers=h).json()["quota"]["limit"] == after["limit"]
