"""The customer's statement and renewal over HTTP on SQLite and PostgreSQL:
``GET /subscriptions/invoices`` and ``POST /subscriptions/renew``."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from server_stub.billing_models import BillingCreditNote
from server_stub.db import transaction
from server_stub.services.billing.plans import PlanSpec
from tests.helpers.api import assert_problem, bearer
from tests.helpers.backend import Backend
from tests.helpers.billing import PRO, RecordingAdapter, checkout_completed
from tests.helpers.billing_customers import Customer, subscribed

BASIC = PlanSpec(name="basic", monthly_quota=500, max_devices=1, price_minor=49_000, rank=1)


@pytest.fixture
def adapter(backend: Backend) -> RecordingAdapter:
    adapter = RecordingAdapter()
    backend.services.billing.add_adapter(adapter)
    backend.services.billing.plans.create("test", PRO)
    backend.services.billing.plans.create("test", BASIC)
    return adapter


def status(backend: Backend, token: Customer) -> dict[str, Any]:
    r = backend.client.get("/subscriptions/status", headers=bearer(token.token))
    assert r.status_code == 200, r.text
    sub: dict[str, Any] = r.json()["subscription"]
    return sub


def when(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def past_due(backend: Backend, adapter: RecordingAdapter, token: Customer, *, hard: bool) -> None:
    """Bring the subscription to its renewal and have the kept card declined."""
    sub = status(backend, token)
    token.later((when(sub["paid_through"]) - backend.clock.now()) / timedelta(days=1) + 0.001)
    adapter.decline(code="stolen_card" if hard else "insufficient_funds", hard=hard)
    backend.services.billing.renew_due()
    assert status(backend, token)["state"] == "past_due"


def invoices(backend: Backend, token: Customer, **params: Any) -> Any:
    return backend.client.get("/subscriptions/invoices", headers=bearer(token.token), params=params)


def renew(backend: Backend, token: Customer, key: str) -> Any:
    headers = {**bearer(token.token), "Idempotency-Key": key}
    return backend.client.post("/subscriptions/renew", headers=headers)


def test_invoices_newest_first_in_pages_with_payments(
    backend: Backend, adapter: RecordingAdapter
) -> None:
    token = subscribed(backend)
    created = token.created
    past_due(backend, adapter, token, hard=False)
    token.later(0.001)
    assert renew(backend, token, "k-1").json()["paid"] is True
    other = subscribed(backend)

    first = invoices(backend, token, limit=1)
    assert first.status_code == 200, first.text
    (renewal,) = first.json()["invoices"]
    assert renewal["id"] != created["invoice_id"] and renewal["status"] == "paid"
    assert [
        (line["kind"], line["amount_minor"], line["currency"]) for line in renewal["lines"]
    ] == [("charge", PRO.price_minor, "RUB")]
    # The charge that paid it (the decline had no payment of the provider's to show).
    assert [(p["status"], p["amount_minor"], p["decline_code"]) for p in renewal["payments"]] == [
        ("succeeded", PRO.price_minor, None)
    ]
    assert {p["provider"] for p in renewal["payments"]} == {"stripe"}
    assert all(p["refunded_minor"] == 0 for p in renewal["payments"])
    assert renewal["credit_applied_minor"] == 0 and renewal["credit_notes"] == []
    cursor = first.json()["next_before"]
    assert cursor == renewal["id"]

    second = invoices(backend, token, limit=1, before=cursor).json()
    assert [i["id"] for i in second["invoices"]] == [created["invoice_id"]]
    assert second["next_before"] is None
    assert second["invoices"][0]["payments"][0]["amount_minor"] == PRO.price_minor
    whole = invoices(backend, token).json()
    assert [i["id"] for i in whole["invoices"]] == [renewal["id"], created["invoice_id"]]
    assert whole["next_before"] is None

    # Another account sees only its own, and cannot page from someone else's invoice.
    theirs = invoices(backend, other).json()["invoices"]
    assert len(theirs) == 1 and theirs[0]["id"] not in {renewal["id"], created["invoice_id"]}
    assert_problem(invoices(backend, other, before=renewal["id"]), 404, "not_found")
    assert_problem(invoices(backend, token, before="no-such-invoice"), 404, "not_found")
    for bad in ({"limit": 0}, {"limit": 101}, {"limit": "x"}, {"before": "../x"}):
        assert_problem(invoices(backend, token, **bad), 422, "validation_error")
    assert_problem(backend.client.get("/subscriptions/invoices"), 401, "token_invalid")


def test_a_credit_note_shows_where_it_was_issued_and_where_it_was_used(
    backend: Backend, adapter: RecordingAdapter
) -> None:
    token = subscribed(backend)
    token.later(5)
    body = {"plan": "basic", "when": "now"}
    done = backend.client.post("/subscriptions/change-plan", headers=bearer(token.token), json=body)
    assert done.status_code == 200, done.text
    credit = -done.json()["change"]["net_minor"]
    change = invoices(backend, token, limit=1).json()["invoices"][0]
    assert change["id"] == done.json()["change"]["invoice_id"]
    assert {line["kind"] for line in change["lines"]} == {"proration_charge", "proration_credit"}
    (note,) = change["credit_notes"]
    assert (note["status"], note["amount_minor"], note["invoice_id"]) == (
        "issued",
        credit,
        change["id"],
    )
    assert note["applied_invoice_id"] is None
    assert status(backend, token)["pending_credit_minor"] == credit
    # The renewal takes the credit off what it charges; the note shows where it went.
    sub = status(backend, token)
    token.later((when(sub["paid_through"]) - backend.clock.now()) / timedelta(days=1) + 0.001)
    backend.services.billing.renew_due()
    renewal = invoices(backend, token, limit=1).json()["invoices"][0]
    assert renewal["status"] == "paid" and renewal["credit_applied_minor"] == credit
    assert renewal["amount_due_minor"] == BASIC.price_minor - credit
    (used,) = renewal["credit_notes"]
    assert (used["id"], used["status"], used["applied_invoice_id"]) == (
        note["id"],
        "applied",
        renewal["id"],
    )
    assert adapter.charges()[-1]["amount_minor"] == BASIC.price_minor - credit
    assert status(backend, token)["pending_credit_minor"] == 0


def test_a_credit_beyond_the_renewal_pays_it_all_and_the_rest_stays_issued(
    backend: Backend, adapter: RecordingAdapter
) -> None:
    token = subscribed(backend)
    sub = status(backend, token)
    with transaction(backend.services.ctx.write) as session:  # a goodwill credit, say
        session.add(
            BillingCreditNote(
                subscription_id=sub["id"],
                amount_minor=150_000,
                currency="RUB",
                reason="goodwill",
                status="issued",
                created_at=backend.clock.now(),
            )
        )
    token.later((when(sub["paid_through"]) - backend.clock.now()) / timedelta(days=1) + 0.001)
    charges = len(adapter.charges())
    backend.services.billing.renew_due()
    assert len(adapter.charges()) == charges  # nothing left to charge
    renewal = invoices(backend, token, limit=1).json()["invoices"][0]
    assert (renewal["status"], renewal["amount_due_minor"]) == ("paid", 0)
    assert renewal["credit_applied_minor"] == PRO.price_minor
    (used,) = renewal["credit_notes"]
    assert (used["amount_minor"], used["status"]) == (PRO.price_minor, "applied")
    after = status(backend, token)
    assert after["state"] == "active" and after["paid_through"] > sub["paid_through"]
    assert after["pending_credit_minor"] == 150_000 - PRO.price_minor


def test_renew_pays_a_past_due_subscription_on_the_kept_card(
    backend: Backend, adapter: RecordingAdapter
) -> None:
    token = subscribed(backend)
    past_due(backend, adapter, token, hard=False)
    before = status(backend, token)
    charges = len(adapter.charges())

    done = renew(backend, token, "renew-1")
    assert done.status_code == 200, done.text
    body = done.json()
    assert body["paid"] is True and body["checkout_url"] is None
    assert body["amount_minor"] == PRO.price_minor and body["currency"] == "RUB"
    sub = body["subscription"]
    assert sub["state"] == "active" and sub["grace_ends_at"] is None
    assert when(sub["entitled_until"]) > when(before["entitled_until"]) + timedelta(days=20)
    # Extended exactly as a renewal: to the end of the invoice's period, one month on.
    assert when(sub["paid_through"]) > when(before["paid_through"]) + timedelta(days=27)
    (charge,) = adapter.charges()[charges:]
    # The dunning path: the second attempt of the renewal invoice (the first was declined).
    assert charge["idempotency_key"] == f"renewal-{body['invoice_id']}-1"
    assert charge["payment_method_ref"] == "pm|cus"
    lic = backend.client.get("/license", headers=bearer(token.token)).json()
    assert lic["status"] == "active" and lic["plan"] == "pro"

    # A replay answers the first answer and charges nothing more.
    again = renew(backend, token, "renew-1")
    assert again.status_code == 200 and again.json() == body
    assert len(adapter.charges()) == charges + 1
    # Now nothing is due: the state refuses, with the problem's code and the state.
    refused = assert_problem(renew(backend, token, "renew-2"), 422, "validation_error")
    assert refused["state"] == "active"


def test_a_declined_renewal_answers_a_checkout_for_another_card(
    backend: Backend, adapter: RecordingAdapter
) -> None:
    token = subscribed(backend)
    past_due(backend, adapter, token, hard=True)
    adapter.decline(code="stolen_card", hard=True)

    done = renew(backend, token, "renew-1")
    assert done.status_code == 200, done.text
    body = done.json()
    assert body["paid"] is False and body["decline_code"] == "stolen_card"
    assert body["checkout_url"].startswith("https://pay.example/stripe/cs_")
    assert body["subscription"]["state"] == "past_due"
    checkout = adapter.checkouts()[-1]
    assert checkout["invoice_id"] == body["invoice_id"]
    assert checkout["amount_minor"] == PRO.price_minor

    # Paid at the checkout with another card: the renewal invoice is paid, the card kept.
    paid = checkout_completed(body["invoice_id"], backend.clock.now(), PRO.price_minor)
    backend.services.billing.apply_event(paid)
    sub = status(backend, token)
    assert sub["state"] == "active"
    statement = invoices(backend, token, limit=1).json()["invoices"][0]
    assert statement["id"] == body["invoice_id"] and statement["status"] == "paid"


def test_renew_refuses_without_anything_due(backend: Backend, adapter: RecordingAdapter) -> None:
    assert_problem(renew(backend, Customer(backend), "k-1"), 404, "not_found")
    token = subscribed(backend)
    refused = assert_problem(renew(backend, token, "k-2"), 422, "validation_error")
    assert refused["state"] == "active"
    assert adapter.charges() == []
    assert_problem(backend.client.post("/subscriptions/renew"), 401, "token_invalid")
