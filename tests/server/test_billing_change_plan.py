"""A plan change over HTTP on SQLite and PostgreSQL: the preview is what the change bills; an
upgrade charges the net on the kept card, a downgrade leaves a credit note, an interval change is
neither; at period end it is stored for the renewal; a decline changes nothing."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from server_stub.billing_models import BillingSubscription
from server_stub.db import transaction
from server_stub.services.billing.changes import apply_scheduled_change
from server_stub.services.billing.plans import PlanSpec
from tests.helpers.api import assert_problem, bearer, register
from tests.helpers.backend import Backend
from tests.helpers.billing import PRO, YEARLY, RecordingAdapter
from tests.helpers.billing_customers import subscribed

TEAM = PlanSpec(name="team", monthly_quota=20_000, max_devices=5, price_minor=199_000, rank=3)
BASIC = PlanSpec(name="basic", monthly_quota=500, max_devices=1, price_minor=49_000, rank=1)
EURO = PlanSpec(
    name="euro", monthly_quota=1, max_devices=1, price_minor=1_000, currency="EUR", rank=4
)
OLD = PlanSpec(name="old", monthly_quota=1, max_devices=1, price_minor=1_000, rank=5)


@pytest.fixture
def adapter(backend: Backend) -> RecordingAdapter:
    adapter = RecordingAdapter()
    billing = backend.services.billing
    billing.add_adapter(adapter)
    for spec in (PRO, YEARLY, TEAM, BASIC, EURO, OLD):
        billing.plans.create("test", spec)
    billing.plans.retire("test", "old")
    return adapter


def post(backend: Backend, token: str, path: str, body: dict[str, Any], **headers: str) -> Any:
    return backend.client.post(path, headers={**bearer(token), **headers}, json=body)


def status(backend: Backend, token: str) -> dict[str, Any]:
    r = backend.client.get("/subscriptions/status", headers=bearer(token))
    assert r.status_code == 200, r.text
    sub: dict[str, Any] = r.json()["subscription"]
    return sub


def license_of(backend: Backend, token: str) -> tuple[str, int]:
    lic = backend.client.get("/license", headers=bearer(token)).json()
    return lic["plan"], lic["device_binding"]["devices_max"]


def test_upgrade_now_charges_the_previewed_net_once(
    backend: Backend, adapter: RecordingAdapter
) -> None:
    token = subscribed(backend).later(10)
    body = {"plan": "team", "when": "now"}
    preview = post(backend, token, "/subscriptions/change-plan/preview", body)
    assert preview.status_code == 200, preview.text
    seen = preview.json()
    assert seen["direction"] == "upgrade" and seen["currency"] == "RUB"
    assert seen["net_minor"] == seen["charge_minor"] - seen["credit_minor"] > 0
    assert sum(line["amount_minor"] for line in seen["lines"]) == seen["net_minor"]
    assert {line["kind"] for line in seen["lines"]} == {"proration_charge", "proration_credit"}
    assert adapter.charges() == [] and status(backend, token)["plan"] == "pro"

    done = post(backend, token, "/subscriptions/change-plan", body, **{"Idempotency-Key": "k-1"})
    assert done.status_code == 200, done.text
    change = done.json()["change"]
    assert {k: v for k, v in change.items() if k != "invoice_id"} == {
        k: v for k, v in seen.items() if k != "invoice_id"
    }
    (charge,) = adapter.charges()
    assert charge["amount_minor"] == seen["net_minor"] and charge["payment_method_ref"] == "pm|cus"
    assert charge["idempotency_key"] == f"change-{change['invoice_id']}"
    assert done.json()["subscription"]["plan"] == "team"
    assert license_of(backend, token) == ("team", 5)
    # A retry of the same request answers the first answer and charges nothing more.
    again = post(backend, token, "/subscriptions/change-plan", body, **{"Idempotency-Key": "k-1"})
    assert again.status_code == 200 and again.json() == done.json()
    assert len(adapter.charges()) == 1
    # Recorded in the history (who, when, why) and audited.
    sub_id = done.json()["subscription"]["id"]
    history = backend.services.billing.history(sub_id)
    last = history.transitions[-1]
    assert (last.actor_kind, last.from_state, last.to_state) == ("user", "active", "active")
    assert "pro → team" in last.reason and last.at == backend.clock.now()
    invoice, lines = history.invoices[-1]
    assert invoice.status == "paid" and invoice.amount_paid_minor == seen["net_minor"]
    assert sorted(line.amount_minor for line in lines) == sorted(
        line["amount_minor"] for line in seen["lines"]
    )
    actions = [
        e.action
        for e in backend.services.audit.search(obj=f"billing/subscription/{sub_id}").entries
    ]
    assert "billing.subscription.change_plan" in actions


def test_downgrade_now_leaves_a_credit_note_and_charges_nothing(
    backend: Backend, adapter: RecordingAdapter
) -> None:
    token = subscribed(backend).later(5)
    body = {"plan": "basic", "when": "now"}
    seen = post(backend, token, "/subscriptions/change-plan/preview", body).json()
    assert seen["direction"] == "downgrade" and seen["net_minor"] < 0
    done = post(backend, token, "/subscriptions/change-plan", body)
    assert done.status_code == 200, done.text
    assert done.json()["change"]["net_minor"] == seen["net_minor"]
    assert adapter.charges() == []
    sub = status(backend, token)
    assert sub["plan"] == "basic" and sub["pending_credit_minor"] == -seen["net_minor"]
    assert license_of(backend, token) == ("basic", 1)


def test_annual_to_monthly_at_one_rank_is_an_interval_change(
    backend: Backend, adapter: RecordingAdapter
) -> None:
    token = subscribed(backend, "pro-year").later(30)
    body = {"plan": "pro", "when": "now"}
    seen = post(backend, token, "/subscriptions/change-plan/preview", body).json()
    # The monthly price is dearer per day; the direction comes from the rank all the same.
    assert seen["direction"] == "interval_change" and seen["interval"] == "month"
    assert seen["charge_minor"] == 99_000 and seen["net_minor"] < 0
    done = post(backend, token, "/subscriptions/change-plan", body)
    assert done.status_code == 200, done.text
    sub = done.json()["subscription"]
    assert (sub["plan"], sub["interval"]) == ("pro", "month")
    assert sub["current_period_start"] == seen["effective_at"]
    assert sub["current_period_end"] == seen["period_end"]
    assert sub["pending_credit_minor"] == -seen["net_minor"] and adapter.charges() == []


def test_period_end_schedules_without_moving_money(
    backend: Backend, adapter: RecordingAdapter
) -> None:
    customer = subscribed(backend)
    token = customer.token
    before = status(backend, token)
    body = {"plan": "basic", "when": "period_end"}
    seen = post(backend, token, "/subscriptions/change-plan/preview", body).json()
    assert seen["effective_at"] == before["current_period_end"]
    assert (seen["new_price_minor"], seen["net_minor"], seen["lines"]) == (49_000, 0, [])
    done = post(backend, token, "/subscriptions/change-plan", body)
    assert done.status_code == 200, done.text
    sub = status(backend, token)
    assert (sub["plan"], sub["scheduled_plan"]) == ("pro", "basic")
    assert sub["scheduled_change_at"] == before["current_period_end"]
    assert adapter.charges() == [] and license_of(backend, token) == ("pro", 3)
    # The renewal applies it once the period is over (not before).
    services = backend.services
    with transaction(services.ctx.write) as session:
        row = session.scalar(select(BillingSubscription).where(BillingSubscription.id == sub["id"]))
        assert row is not None
        assert not apply_scheduled_change(session, row, backend.clock.now())
    customer.later(40)
    with transaction(services.ctx.write) as session:
        row = session.get(BillingSubscription, sub["id"])
        assert row is not None
        assert apply_scheduled_change(session, row, backend.clock.now())
        assert (row.price_minor, row.scheduled_plan_id) == (49_000, None)


def test_a_declined_upgrade_changes_nothing(backend: Backend, adapter: RecordingAdapter) -> None:
    token = subscribed(backend).later(3)
    before = status(backend, token)
    adapter.decline_next = "insufficient_funds"
    r = post(backend, token, "/subscriptions/change-plan", {"plan": "team"})
    assert_problem(r, 422, "validation_error")
    assert "declined" in r.json()["detail"]
    assert len(adapter.charges()) == 1
    after = status(backend, token)
    assert after == before and license_of(backend, token) == ("pro", 3)
    history = backend.services.billing.history(before["id"])
    assert [t.to_state for t in history.transitions][-1] == "active"
    assert len(history.transitions) == 2
    assert [i.status for i, _ in history.invoices] == ["paid", "void"]


def test_refusals_are_problems(backend: Backend, adapter: RecordingAdapter) -> None:
    token = subscribed(backend).token
    path = "/subscriptions/change-plan"
    for route in (path, f"{path}/preview"):
        assert_problem(post(backend, token, route, {"plan": "pro"}), 422, "validation_error")
        assert_problem(post(backend, token, route, {"plan": "old"}), 422, "validation_error")
        assert_problem(post(backend, token, route, {"plan": "nope"}), 404, "not_found")
        assert_problem(post(backend, token, route, {"plan": "euro"}), 422, "validation_error")
        assert_problem(
            post(backend, token, route, {"plan": "team", "when": "x"}), 422, "validation_error"
        )
    nobody = register(backend.client)["token"]
    assert_problem(post(backend, nobody, path, {"plan": "team"}), 404, "not_found")
    sub_id = status(backend, token)["id"]
    with transaction(backend.services.ctx.write) as session:
        row = session.get(BillingSubscription, sub_id)
        assert row is not None
        row.state = "past_due"
    r = post(backend, token, path, {"plan": "team"})
    assert_problem(r, 422, "validation_error")
    assert "past_due" in r.json()["detail"] and adapter.charges() == []


def test_the_renewal_applies_a_change_scheduled_for_the_period_end(
    backend: Backend, adapter: RecordingAdapter
) -> None:
    customer = subscribed(backend)
    done = post(
        backend,
        customer.token,
        "/subscriptions/change-plan",
        {"plan": "basic", "when": "period_end"},
    )
    assert done.status_code == 200, done.text
    before = status(backend, customer.token)
    # Before the period's end nothing is due: no charge, still on pro.
    backend.services.billing.renew_due()
    assert adapter.charges() == []
    token = customer.later(31)
    backend.services.billing.renew_due()
    (charge,) = adapter.charges()
    assert charge["amount_minor"] == 49_000  # the new plan's price, not pro's 99_000
    sub = status(backend, token)
    assert (sub["plan"], sub["scheduled_plan"], sub["state"]) == ("basic", None, "active")
    assert sub["paid_through"] > before["paid_through"]
    assert license_of(backend, token) == ("basic", 1)
