"""A backend with billing over real HTTP, its providers the fakes (the Stripe side through the
official SDK): a customer subscribes and pays at the fake; the fake's signed webhook lands in
the inbox; the test drives the inbox's worker (no sweeper races its assertions)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from server_stub.app import create_app
from server_stub.clock import FakeClock, SystemClock
from server_stub.config import Settings
from server_stub.fake_providers.demo import DemoProviders, demo_providers
from server_stub.services.billing.plans import PlanSpec
from server_stub.services.staff import Role
from server_stub.wiring import Services, build_services
from tests.helpers.api import bearer, fingerprint, register
from tests.helpers.live_server import LiveServer
from tests.helpers.staff import StaffLogin, new_staff

PLAN = PlanSpec(
    name="pro", monthly_quota=5000, max_devices=3, features=["broadcast"], price_minor=99_000
)


@dataclass
class Shop:
    client: httpx.Client
    services: Services
    fakes: DemoProviders

    def subscribe(self, provider: str, email: str | None = None) -> tuple[str, dict[str, Any]]:
        token = register(self.client, email or f"{provider}@example.com", fingerprint())["token"]
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

    def subscription(self, token: str) -> dict[str, Any]:
        r = self.client.get("/subscriptions/status", headers=bearer(token))
        assert r.status_code == 200, r.text
        sub: dict[str, Any] = r.json()["subscription"]
        return sub

    def pay_stripe(self) -> None:
        """The newest open Checkout Session paid; its webhooks delivered (unless dropped)."""
        sessions = [
            s for s in self.fakes.stripe.of_type("checkout.session") if s["status"] == "open"
        ]
        self.fakes.stripe.complete_checkout(sessions[-1]["id"])
        self.fakes.stripe.flush_webhooks()
        self.services.webhooks.drain()

    def pay_cloudpayments(self) -> None:
        order_id = list(self.fakes.cloudpayments.orders)[-1]
        self.fakes.cloudpayments.pay_order(order_id)
        self.fakes.cloudpayments.flush_webhooks()
        self.services.webhooks.drain()

    def staff(self, role: Role) -> StaffLogin:
        """A staff member of ``role``, logged in (TOTP codes at the real time: the server's)."""
        return new_staff(self.client, self.services, FakeClock(datetime.now(UTC)), role)


@contextmanager
def open_shop(database_url: str, tmp_path: Path) -> Iterator[Shop]:
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
