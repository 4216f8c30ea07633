"""A backend wired to a fake RuStore (server_stub/fake_providers/rustore_fake.py) on an
ephemeral port, with a catalogue of store products."""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from server_stub.billing_models import BillingSubscription
from server_stub.clock import FakeClock
from server_stub.db import transaction
from server_stub.fake_providers.delivery import serving
from server_stub.fake_providers.rustore_fake import FakeRuStore
from server_stub.services.store.products import Product
from server_stub.store_models import StorePurchase
from tests.helpers.api import bearer, fingerprint, register
from tests.helpers.backend import Backend, BackendFactory
from tests.helpers.billing import PRO as PRO_PLAN

TOKEN = "public-token-for-tests"
#: A consumable of 100 points, and a subscription to the plan "pro".
COINS = Product("coins_100", "consumable", "100 coins", 9900, "RUB", 100, None, True)
PRO = Product("pro_monthly", "subscription", "Pro", 49900, "RUB", None, "pro", True)


@dataclass
class Store:
    backend: Backend
    fake: FakeRuStore
    key: bytes

    def account(self) -> dict[str, Any]:
        fp = fingerprint()
        body = register(self.backend.client, fp=fp)
        return {
            "id": body["user"]["id"],
            "headers": bearer(body["token"]),
            "fp": fp,
            "refresh": body["refresh_token"],
        }

    def refresh(self, account: dict[str, Any]) -> None:
        """New tokens for ``account`` (after the fake clock moved past the access token's life)."""
        body = {"refresh_token": account["refresh"], "device_fingerprint": account["fp"]}
        answer = self.backend.client.post("/auth/refresh", json=body)
        assert answer.status_code == 200, answer.text
        account["headers"] = bearer(answer.json()["token"])
        account["refresh"] = answer.json()["refresh_token"]

    def post_notification(self, body: bytes) -> Any:
        return self.backend.client.post(
            "/webhooks/rustore", content=body, headers={"Content-Type": "application/json"}
        )

    def drain(self) -> int:
        return self.backend.services.webhooks.drain()

    def balance(self, user_id: str) -> int:
        return self.backend.services.points.balance(user_id).balance

    def verify_subscription(
        self, headers: dict[str, str], token: str, product: str = PRO.id
    ) -> Any:
        body = {"provider": "rustore", "subscription_token": token, "product_id": product}
        return self.backend.client.post("/subscriptions/verify", headers=headers, json=body)

    def plan(self, account: dict[str, Any]) -> str | None:
        """The plan ``/license`` says is in force for ``account`` now (its tokens refreshed);
        ``None``: none is (a plan that lapsed leaves the license inactive)."""
        self.refresh(account)
        answer = self.backend.client.get("/license", headers=account["headers"])
        assert answer.status_code == 200, answer.text
        plan = answer.json()["plan"]
        return None if plan is None else str(plan)

    def purchases(self) -> list[StorePurchase]:
        with transaction(self.backend.services.ctx.read) as session:
            query = select(StorePurchase).order_by(StorePurchase.created_at)
            return list(session.scalars(query))

    def subscriptions(self) -> list[BillingSubscription]:
        with transaction(self.backend.services.ctx.read) as session:
            return list(session.scalars(select(BillingSubscription)))

    def tick(self, seconds: float = 1.0) -> None:
        self.backend.clock.advance(seconds)


def rustore_settings(base_url: str, app_id: str, key: bytes) -> dict[str, object]:
    """The server settings that point it at a fake RuStore and trust its notifications."""
    return {
        "rustore_api_base": base_url,
        "rustore_public_token": TOKEN,
        "rustore_app_id": app_id,
        "rustore_package_name": "com.tgflow.test",
        "rustore_console_key": base64.b64encode(key).decode(),
    }


@contextmanager
def rustore_store(make_backend: BackendFactory, **overrides: object) -> Iterator[Store]:
    key = os.urandom(32)
    clock = FakeClock()
    fake = FakeRuStore(public_token=TOKEN, console_key=key, clock=clock)
    with serving(fake) as url:
        values: dict[str, object] = {
            **rustore_settings(url, fake.app_id, key),
            # The lifespan's worker sleeps; a test applies the inbox with drain() alone, so it
            # never returns while another worker is mid-apply.
            "webhook_poll_seconds": 300,
        }
        values.update(overrides)
        backend = make_backend(**values)
        fake.clock = backend.clock  # one time for the store and the server
        backend.services.billing.plans.create("test", PRO_PLAN)  # the plan PRO grants
        for product in (COINS, PRO):
            backend.services.store.products.create("test", product)
        yield Store(backend, fake, key)
