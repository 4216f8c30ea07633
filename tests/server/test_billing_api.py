"""Billing over HTTP on SQLite and PostgreSQL: ``/plans``, ``/subscriptions/...``, the staff's
plans, the CLI, and the license that follows the subscription."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from server_stub.cli import main as cli_main
from server_stub.services.billing.plans import MAX_MONTHLY_QUOTA, MAX_PRICE_MINOR, PlanSpec
from server_stub.services.staff import Role
from tests.helpers.api import PASSWORD, assert_problem, bearer, fingerprint, register
from tests.helpers.backend import Backend
from tests.helpers.billing import PRO, RecordingAdapter, checkout_completed
from tests.helpers.staff import new_staff


@pytest.fixture
def adapter(backend: Backend) -> RecordingAdapter:
    adapter = RecordingAdapter()
    backend.services.billing.add_adapter(adapter)
    backend.services.billing.plans.create("test", PRO)
    return adapter


def paid(backend: Backend, invoice_id: str) -> None:
    backend.services.billing.apply_event(
        checkout_completed(invoice_id, backend.clock.now(), 99_000)
    )


def subscribe(backend: Backend, token: str) -> dict[str, Any]:
    r = backend.client.post(
        "/subscriptions/create", headers=bearer(token), json={"plan": "pro", "provider": "stripe"}
    )
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


def test_plans_are_public_with_their_prices(backend: Backend, adapter: RecordingAdapter) -> None:
    backend.services.billing.plans.create(
        "test", PlanSpec(name="old", monthly_quota=1, max_devices=1, price_minor=100)
    )
    backend.services.billing.plans.retire("test", "old")
    r = backend.client.get("/plans")
    assert r.status_code == 200, r.text
    plans = {p["name"]: p for p in r.json()["plans"]}
    assert "old" not in plans
    assert plans["pro"] == {
        "name": "pro",
        "monthly_quota": 5000,
        "max_devices": 3,
        "features": ["broadcast"],
        "price_minor": 99_000,
        "currency": "RUB",
        "interval": "month",
        "trial_days": 0,
        "rank": 2,
        "topup_messages_per_point": 0,
    }


def test_the_license_follows_the_subscription(backend: Backend, adapter: RecordingAdapter) -> None:
    email, fp = "payer@example.com", fingerprint()
    token = register(backend.client, email, fp)["token"]
    client = backend.client
    status = client.get("/subscriptions/status", headers=bearer(token))
    assert status.status_code == 200 and status.json() == {"subscription": None}
    created = subscribe(backend, token)
    assert created["subscription"]["state"] == "incomplete"
    assert created["checkout_url"].startswith("https://pay.example/stripe/cs_")
    assert adapter.checkouts()[0]["customer_email"].endswith("@example.com")
    paid(backend, created["invoice_id"])
    lic = client.get("/license", headers=bearer(token)).json()
    assert (lic["plan"], lic["status"], lic["device_binding"]["devices_max"]) == (
        "pro",
        "active",
        3,
    )
    sub = client.get("/subscriptions/status", headers=bearer(token)).json()["subscription"]
    assert sub["state"] == "active" and sub["paid_through"] and sub["entitled_until"]
    # Cancel now: no renewal, but the month paid stays in force (no grace: nothing to collect).
    r = client.post("/subscriptions/cancel", headers=bearer(token), json={"when": "now"})
    assert r.status_code == 200 and r.json()["subscription"]["state"] == "canceled"
    # Staff see every transition: who or what, when, why; and the invoice's lines.
    support = new_staff(client, backend.services, backend.clock, Role.SUPPORT, enrol=False)
    url = f"/staff/billing/subscriptions/{created['subscription']['id']}"
    history = client.get(url, headers=support.headers)
    assert history.status_code == 200, history.text
    moves = [
        (t["from_state"], t["to_state"], t["actor_kind"]) for t in history.json()["transitions"]
    ]
    assert moves == [
        (None, "incomplete", "user"),
        ("incomplete", "active", "provider"),
        ("active", "canceled", "user"),
    ]
    (invoice,) = history.json()["invoices"]
    assert invoice["status"] == "paid" and invoice["amount_paid_minor"] == 99_000
    assert [(line["kind"], line["amount_minor"]) for line in invoice["lines"]] == [
        ("charge", 99_000)
    ]
    missing = client.get("/staff/billing/subscriptions/no-such-thing", headers=support.headers)
    assert_problem(missing, 404, "not_found")
    assert client.get("/license", headers=bearer(token)).json()["status"] == "active"
    backend.clock.advance(timedelta(days=32).total_seconds())
    login = {"email": email, "password": PASSWORD, "device_fingerprint": fp}
    token = client.post("/auth/login", json=login).json()["token"]
    lic = client.get("/license", headers=bearer(token)).json()
    assert lic["status"] == "inactive" and lic["plan"] is None
    r = client.post(
        "/usage/reserve",
        headers=bearer(token),
        json={"messages": 1, "correlation_id": "c-12345678"},
    )
    assert_problem(r, 403, "license_inactive")


def test_pause_resume_and_refusals(backend: Backend, adapter: RecordingAdapter) -> None:
    token = register(backend.client)["token"]
    client = backend.client
    assert_problem(client.post("/subscriptions/pause", headers=bearer(token)), 404, "not_found")
    assert_problem(
        client.post("/subscriptions/cancel", headers=bearer(token), json={}), 404, "not_found"
    )
    paid(backend, subscribe(backend, token)["invoice_id"])
    r = client.post("/subscriptions/pause", headers=bearer(token))
    assert r.status_code == 200 and r.json()["subscription"]["state"] == "paused"
    r = client.post("/subscriptions/resume", headers=bearer(token))
    assert r.status_code == 200 and r.json()["subscription"]["state"] == "active"
    assert_problem(
        client.post("/subscriptions/resume", headers=bearer(token)), 422, "validation_error"
    )
    assert_problem(
        client.post(
            "/subscriptions/create",
            headers=bearer(token),
            json={"plan": "pro", "provider": "stripe"},
        ),
        409,
        "already_exists",
    )
    # Fail closed: a provider without configuration refuses.
    other = register(client)["token"]
    r = client.post(
        "/subscriptions/create",
        headers=bearer(other),
        json={"plan": "pro", "provider": "cloudpayments"},
    )
    assert_problem(r, 503, "service_unavailable")
    assert_problem(
        client.post("/subscriptions/create", json={"plan": "pro", "provider": "stripe"}),
        401,
        "token_invalid",
    )
    r = client.post(
        "/subscriptions/create", headers=bearer(other), json={"plan": "pro", "provider": "paypal"}
    )
    assert_problem(r, 422, "validation_error")


def test_staff_manage_plans_with_permissions_and_audit(backend: Backend) -> None:
    client = backend.client
    admin = new_staff(client, backend.services, backend.clock, Role.ADMIN)
    support = new_staff(client, backend.services, backend.clock, Role.SUPPORT, enrol=False)
    body = {
        "name": "team",
        "monthly_quota": 20000,
        "max_devices": 5,
        "price_minor": 250_000,
        "interval": "year",
        "rank": 3,
        "trial_days": 7,
    }
    assert_problem(
        client.post("/staff/billing/plans", headers=support.headers, json=body), 403, "forbidden"
    )
    r = client.post("/staff/billing/plans", headers=admin.headers, json=body)
    assert r.status_code == 201, r.text
    assert r.json()["price_minor"] == 250_000 and r.json()["retired_at"] is None
    assert_problem(
        client.post("/staff/billing/plans", headers=admin.headers, json=body), 409, "already_exists"
    )
    r = client.patch(
        "/staff/billing/plans/team", headers=admin.headers, json={"price_minor": 200_000}
    )
    assert r.status_code == 200 and r.json()["price_minor"] == 200_000
    # The highest price the API takes fits the column on every database (64 bits: 0018).
    r = client.patch(
        "/staff/billing/plans/team", headers=admin.headers, json={"price_minor": MAX_PRICE_MINOR}
    )
    assert r.status_code == 200 and r.json()["price_minor"] == MAX_PRICE_MINOR
    # A quota past what the counters hold is refused, not a database error (503 on PostgreSQL).
    assert_problem(
        client.patch(
            "/staff/billing/plans/team",
            headers=admin.headers,
            json={"monthly_quota": MAX_MONTHLY_QUOTA + 1},
        ),
        422,
        "validation_error",
    )
    assert_problem(
        client.patch("/staff/billing/plans/team", headers=admin.headers, json={"currency": "rub"}),
        422,
        "validation_error",
    )
    assert_problem(
        client.patch("/staff/billing/plans/team", headers=admin.headers, json={"rank": None}),
        422,
        "validation_error",
    )
    r = client.post("/staff/billing/plans/team/retire", headers=admin.headers)
    assert r.status_code == 200 and r.json()["retired_at"]
    listed = client.get("/staff/billing/plans", headers=support.headers)
    assert listed.status_code == 200
    assert [p["name"] for p in listed.json()["plans"] if p["retired_at"]] == ["team"]
    page = backend.services.audit.search(obj="billing/plan/team")
    actions = [e.action for e in page.entries]
    assert sorted(actions) == [
        "billing.plan.change",
        "billing.plan.change",
        "billing.plan.create",
        "billing.plan.retire",
    ]
    assert {e.actor for e in page.entries} == {f"staff:{admin.id}"}


def test_plans_on_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = str(tmp_path / "d")
    argv = [
        "plans",
        "create",
        "--name",
        "pro",
        "--quota",
        "5000",
        "--price",
        "99000",
        "--interval",
        "year",
        "--rank",
        "2",
        "--data-dir",
        data,
    ]
    assert cli_main(argv) == 0
    assert "99000 RUB/year  rank 2" in capsys.readouterr().out
    assert (
        cli_main(["plans", "change", "--name", "pro", "--price", "89000", "--data-dir", data]) == 0
    )
    assert cli_main(["plans", "retire", "--name", "pro", "--data-dir", data]) == 0
    assert cli_main(["plans", "list", "--data-dir", data]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^pro\s+5000 msg/month.*89000 RUB/year  rank 2  retired$", out, re.M), out
    assert (
        cli_main(["plans", "change", "--name", "pro", "--currency", "usd", "--data-dir", data]) == 2
    )
    assert "ISO 4217" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli_main(["plans", "retire", "--data-dir", data])
    assert "needs --name" in capsys.readouterr().err
