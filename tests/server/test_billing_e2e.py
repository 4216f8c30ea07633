"""Billing end to end over real HTTP: a customer subscribes, pays at the (fake) provider, the
provider's signed webhook lands in the inbox, the worker applies it, and the license follows.
The fakes speak Stripe's and CloudPayments' real wire (the Stripe side through the official SDK);
SQLite and PostgreSQL."""

from __future__ import annotations

from tests.helpers.api import bearer, fingerprint, register
from tests.helpers.billing_shop import Shop


def test_a_stripe_checkout_paid_makes_the_license_active(shop: Shop) -> None:
    token, created = shop.subscribe("stripe")
    assert created["subscription"]["state"] == "incomplete"
    assert created["checkout_url"].startswith(shop.fakes.settings["stripe_api_base"])
    assert shop.license(token)["plan"] != "pro"  # the default plan until paid

    (session,) = shop.fakes.stripe.of_type("checkout.session")
    shop.fakes.stripe.complete_checkout(session["id"])
    shop.fakes.stripe.flush_webhooks()  # delivered, signed, to /webhooks/stripe
    assert shop.services.webhooks.drain() >= 1

    lic = shop.license(token)
    assert (lic["plan"], lic["status"]) == ("pro", "active")
    status = shop.client.get("/subscriptions/status", headers=bearer(token)).json()
    assert status["subscription"]["state"] == "active"
    # The same webhooks again (Stripe retries): stored once, applied once.
    assert shop.services.webhooks.drain() == 0


def test_a_cloudpayments_order_paid_makes_the_license_active(shop: Shop) -> None:
    token, created = shop.subscribe("cloudpayments")
    order_id = next(iter(shop.fakes.cloudpayments.orders))
    assert created["checkout_url"].startswith(shop.fakes.settings["cloudpayments_api_base"])
    # CloudPayments asks first (Check): our invoice, the right amount → accepted; then Pay.
    shop.fakes.cloudpayments.pay_order(order_id)
    shop.fakes.cloudpayments.flush_webhooks()
    assert shop.services.webhooks.drain() >= 1
    lic = shop.license(token)
    assert (lic["plan"], lic["status"]) == ("pro", "active")


def test_a_retried_subscribe_with_its_idempotency_key_opens_one_checkout(shop: Shop) -> None:
    token = register(shop.client, "retry@example.com", fingerprint())["token"]
    headers = {**bearer(token), "Idempotency-Key": "subscribe-7d0c1f"}
    body = {"plan": "pro", "provider": "stripe"}
    first = shop.client.post("/subscriptions/create", headers=headers, json=body)
    again = shop.client.post("/subscriptions/create", headers=headers, json=body)
    assert first.status_code == again.status_code == 201, first.text
    assert again.content == first.content and again.headers["Idempotent-Replayed"] == "true"
    assert len(shop.fakes.stripe.of_type("checkout.session")) == 1
    other = shop.client.post(
        "/subscriptions/create", headers=headers, json={**body, "provider": "cloudpayments"}
    )
    assert other.status_code == 409 and other.json()["code"] == "idempotency_conflict"
    cancel = {**bearer(token), "Idempotency-Key": "cancel-1"}
    r1 = shop.client.post("/subscriptions/cancel", headers=cancel, json={"when": "now"})
    r2 = shop.client.post("/subscriptions/cancel", headers=cancel, json={"when": "now"})
    assert r1.status_code == r2.status_code and r1.content == r2.content
    assert r2.headers.get("Idempotent-Replayed") == "true"
