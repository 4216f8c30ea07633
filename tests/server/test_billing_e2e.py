"""Billing end to end over real HTTP: a customer subscribes, pays at the (fake) provider, the
provider's signed webhook lands in the inbox, the worker applies it, and the license follows.
The fakes speak Stripe's and CloudPayments' real wire (the Stripe side through the official SDK);
SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from server_stub.app import create_app
from server_stub.clock import SystemClock
from server_stub.config import Settings
from server_stub.fake_providers.demo import DemoProviders, demo_providers
from server_stub.services.billing.plans import PlanSpec
from server_stub.wiring import Services, build_services
from tests.helpers.api import bearer, fingerprint, register
from tests.helpers.live_server import LiveServer

PLAN = PlanSpec(
    name="pro", monthly_quota=5000, max_devices=3, features=["broadcast"], price_minor=99_000
)


@dataclass
class Shop:
    client: httpx.Client
    services: Services
    fakes: DemoProviders

    def subscribe(self, provider: str) -> tuple[str, dict[str, Any]]:
        token = register(self.client, f"{provider}@example.com", fingerprint())["token"]
        r = self.client.post(
            "/subscriptions/create",
            headers=bearer(token),
            json={"plan": "pro", "provider": provider},
        )
        assert r.status_code == 201, r.text
        return token, r.json()

    def license(self, token: str) -> dict[str, Any]:
        r = self.client.get("/license", headers=bearer(token))
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body


@pytest.fixture
def shop(database_url: str, tmp_path: Path) -> Iterator[Shop]:
    with demo_providers() as fakes:
        settings = Settings(
            data_dir=tmp_path / "server",
            database_url=database_url,
            rate_limit_enabled=False,
            stripe_webhook_secrets=[fakes.stripe_webhook_secret],  # type: ignore[list-item]
            **fakes.settings,  # type: ignore[arg-type]
        )
        services = build_services(settings, SystemClock())
        services.billing.plans.create("test", PLAN)
        # No sweeper: the test drives the webhook worker, so nothing races its assertions.
        app = create_app(settings, services=services, sweeper=False)
        with LiveServer(app) as server, httpx.Client(base_url=server.url, timeout=30) as client:
            fakes.deliver_to(server.url)
            try:
                yield Shop(client, services, fakes)
            finally:
                services.ctx.engine.dispose()


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
