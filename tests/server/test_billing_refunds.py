"""The operator's refunds over real HTTP, through the real Stripe SDK against the fake Stripe and
through CloudPayments' API against its fake: full and partial, never more than remains, the
provider's webhook of the same refund changes nothing, a full refund of the current period ends
the entitlement; SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from server_stub.billing_models import BillingAppliedEvent
from server_stub.db import transaction
from server_stub.services.staff import Role
from tests.helpers.api import assert_problem
from tests.helpers.billing_shop import Shop
from tests.helpers.staff import StaffLogin


def _paid(shop: Shop, provider: str) -> tuple[str, str]:
    """A customer subscribed and paid with ``provider``: (their token, the subscription's id)."""
    token, created = shop.subscribe(provider)
    if provider == "stripe":
        shop.pay_stripe()
    else:
        shop.pay_cloudpayments()
    assert shop.license(token)["plan"] == "pro"
    return token, created["subscription"]["id"]


def _payments(shop: Shop, admin: StaffLogin, sub_id: str) -> list[dict[str, Any]]:
    r = shop.client.get(
        "/staff/billing/payments", params={"subscription": sub_id}, headers=admin.headers
    )
    assert r.status_code == 200, r.text
    payments: list[dict[str, Any]] = r.json()["payments"]
    return payments


def _refund(
    shop: Shop, who: StaffLogin, payment_id: str, key: str, amount: int | None = None
) -> Any:
    body = {} if amount is None else {"amount_minor": amount}
    return shop.client.post(
        f"/staff/billing/payments/{payment_id}/refund",
        headers={**who.headers, "Idempotency-Key": key},
        json=body,
    )


def _refund_outcomes(shop: Shop) -> list[str]:
    with transaction(shop.services.ctx.read) as session:
        rows = session.scalars(
            select(BillingAppliedEvent.outcome).where(BillingAppliedEvent.kind == "refunded")
        )
        return sorted(rows)


def test_a_full_stripe_refund_ends_the_entitlement_and_its_webhook_changes_nothing(
    shop: Shop,
) -> None:
    token, sub_id = _paid(shop, "stripe")
    admin = shop.staff(Role.ADMIN)
    (payment,) = _payments(shop, admin, sub_id)
    assert (payment["amount_minor"], payment["refunded_minor"]) == (99_000, 0)

    r = _refund(shop, admin, payment["id"], "refund-full-1")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["amount_minor"] == 99_000 and body["succeeded"] is True
    assert body["entitlement_ended"] is True
    assert body["refund_ref"].startswith("re_")
    assert shop.subscription(token)["state"] == "canceled"
    assert shop.license(token)["plan"] != "pro"
    # A retry with the same key is the first answer again: one refund at Stripe.
    again = _refund(shop, admin, payment["id"], "refund-full-1")
    assert again.content == r.content and again.headers["Idempotent-Replayed"] == "true"
    assert len(shop.fakes.stripe.of_type("refund")) == 1

    # Stripe's webhooks of the same refund arrive: nothing changes.
    shop.fakes.stripe.flush_webhooks()
    assert shop.services.webhooks.drain() >= 1
    (after,) = _payments(shop, admin, sub_id)
    assert after["refunded_minor"] == 99_000
    outcomes = _refund_outcomes(shop)
    assert "duplicate" in outcomes and outcomes.count("applied") == 1  # our marker only

    nothing_left = _refund(shop, admin, payment["id"], "refund-full-2")
    assert "refunded in full" in assert_problem(nothing_left, 422, "validation_error")["detail"]
    entries = shop.services.audit.search(action="billing.payment.refund").entries
    assert len(entries) == 1


def test_a_partial_stripe_refund_keeps_the_entitlement_and_never_refunds_more_than_remains(
    shop: Shop,
) -> None:
    token, sub_id = _paid(shop, "stripe")
    admin = shop.staff(Role.ADMIN)
    (payment,) = _payments(shop, admin, sub_id)

    r = _refund(shop, admin, payment["id"], "part-1", 30_000)
    assert r.status_code == 200, r.text
    assert r.json()["entitlement_ended"] is False
    assert r.json()["payment"]["refunded_minor"] == 30_000
    assert shop.subscription(token)["state"] == "active"
    assert shop.license(token)["plan"] == "pro"

    too_much = _refund(shop, admin, payment["id"], "part-2", 69_001)
    assert "69000" in assert_problem(too_much, 422, "validation_error")["detail"]
    assert len(shop.fakes.stripe.of_type("refund")) == 1

    shop.fakes.stripe.flush_webhooks()
    shop.services.webhooks.drain()
    assert _payments(shop, admin, sub_id)[0]["refunded_minor"] == 30_000

    rest = _refund(shop, admin, payment["id"], "part-3")
    assert rest.status_code == 200, rest.text
    assert rest.json()["amount_minor"] == 69_000 and rest.json()["entitlement_ended"] is True
    assert shop.subscription(token)["state"] == "canceled"


def test_a_cloudpayments_refund_is_booked_once(shop: Shop) -> None:
    token, sub_id = _paid(shop, "cloudpayments")
    admin = shop.staff(Role.ADMIN)
    (payment,) = _payments(shop, admin, sub_id)
    r = _refund(shop, admin, payment["id"], "cp-part", 9_000)
    assert r.status_code == 200, r.text
    assert r.json()["payment"]["refunded_minor"] == 9_000
    # CloudPayments' Refund notification of the same refund: nothing changes.
    shop.fakes.cloudpayments.flush_webhooks()
    assert shop.services.webhooks.drain() >= 1
    assert _payments(shop, admin, sub_id)[0]["refunded_minor"] == 9_000
    assert "duplicate" in _refund_outcomes(shop)
    full = _refund(shop, admin, payment["id"], "cp-rest")
    assert full.status_code == 200 and full.json()["entitlement_ended"] is True
    assert shop.license(token)["plan"] != "pro"


def test_a_provider_refusal_or_outage_books_nothing(shop: Shop) -> None:
    token, sub_id = _paid(shop, "stripe")
    admin = shop.staff(Role.ADMIN)
    (payment,) = _payments(shop, admin, sub_id)
    shop.fakes.stripe.fail_next(1, status=400)
    refused = _refund(shop, admin, payment["id"], "refused")
    assert "refused" in assert_problem(refused, 422, "validation_error")["detail"]
    shop.fakes.stripe.fail_next(10, status=500)
    down = _refund(shop, admin, payment["id"], "down")
    assert_problem(down, 503, "service_unavailable")
    assert _payments(shop, admin, sub_id)[0]["refunded_minor"] == 0
    assert shop.subscription(token)["state"] == "active"
    assert shop.services.audit.search(action="billing.payment.refund").entries == []


@pytest.mark.parametrize("role", [Role.SUPPORT, Role.SALES, Role.AUDIT])
def test_only_an_admin_refunds(shop: Shop, role: Role) -> None:
    _token, sub_id = _paid(shop, "stripe")
    admin = shop.staff(Role.ADMIN)
    (payment,) = _payments(shop, admin, sub_id)
    them = shop.staff(role)
    assert len(_payments(shop, them, sub_id)) == 1  # they read it (billing.read)
    assert_problem(_refund(shop, them, payment["id"], f"by-{role}"), 403, "forbidden")
    assert shop.fakes.stripe.of_type("refund") == []


def test_listing_payments_needs_a_filter(shop: Shop) -> None:
    admin = shop.staff(Role.ADMIN)
    r = shop.client.get("/staff/billing/payments", headers=admin.headers)
    assert_problem(r, 422, "validation_error")
