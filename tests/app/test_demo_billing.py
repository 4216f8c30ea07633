"""The demo's checkout without a window: the fake provider's hosted page takes the payment, its
signed webhook is applied by the backend, the browser lands on the demo's "payment done" page,
and a restarted demo keeps the plan paid for (and its offer), does not grant its points again,
and sells its points products once each."""

from __future__ import annotations

from pathlib import Path

import httpx

from app.demo import DemoBackend, start_demo_backend
from app.demo_billing import (
    DEMO_PLANS,
    DEMO_POINTS,
    DEMO_POINTS_PRODUCTS,
    DEMO_TOPUP_RATE,
    PAID_PAGE,
)
from tests.helpers.api import fingerprint


def start(data_dir: Path) -> DemoBackend:
    # The worker of the app's lifespan idles for the longest wait allowed: the test applies the
    # webhooks itself (work_once), so nothing races it.
    return start_demo_backend(
        data_dir, marketplace=False, rate_limit_enabled=False, webhook_poll_seconds=300
    )


def bearer(http: httpx.Client, backend: DemoBackend) -> dict[str, str]:
    r = http.post(
        "/auth/login",
        json={
            "email": backend.email,
            "password": backend.password,
            "device_fingerprint": fingerprint(),
        },
    )
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


def test_the_checkout_page_pays_and_a_restart_keeps_the_plan(tmp_path: Path) -> None:
    backend = start(tmp_path / "server")
    try:
        assert backend.payments is not None
        with httpx.Client(base_url=backend.url) as http:
            auth = bearer(http, backend)
            offered = [plan["name"] for plan in http.get("/plans").json()["plans"]]
            # The demo user's own plan is not for sale.
            assert "demo" not in offered and offered[-3:] == [p.name for p in DEMO_PLANS]
            created = http.post(
                "/subscriptions/create", json={"plan": "basic", "provider": "stripe"}, headers=auth
            )
            assert created.status_code == 201, created.text
            page = httpx.post(created.json()["checkout_url"], data={"outcome": "pay"})
            assert page.status_code == 303 and PAID_PAGE in page.headers["location"]
            landed = httpx.get(page.headers["location"])
            assert landed.status_code == 200 and "Payment done" in landed.text
            backend.payments.stripe.flush_webhooks()
            assert backend.services.webhooks.work_once() >= 1
            status = http.get("/subscriptions/status", headers=auth).json()["subscription"]
            assert status["state"] == "active" and status["plan"] == "basic"
            assert http.get("/license", headers=auth).json()["plan"] == "basic"
            # The granted points buy messages at the demo plans' rate.
            topup = {"points": 5, "idempotency_key": "demo-test-topup"}
            done = http.post("/usage/topup", json=topup, headers=auth)
            assert done.status_code == 200, done.text
            assert done.json()["messages"] == 5 * DEMO_TOPUP_RATE
            assert done.json()["balance"]["balance"] == DEMO_POINTS - 5
    finally:
        backend.stop()

    again = start(tmp_path / "server")
    try:
        with httpx.Client(base_url=again.url) as http:
            auth = bearer(http, again)
            assert http.get("/license", headers=auth).json()["plan"] == "basic"
            offered = [plan["name"] for plan in http.get("/plans").json()["plans"]]
            assert offered[-3:] == [p.name for p in DEMO_PLANS]
            # Granted once: what the first run spent stays spent.
            balance = http.get("/points/balance", headers=auth).json()["balance"]
            assert balance == DEMO_POINTS - 5
            # The points products, sold once each, and known to the new run's fake store.
            sold = [p["id"] for p in http.get("/products").json()["products"]]
            assert sorted(sold) == sorted(p.id for p in DEMO_POINTS_PRODUCTS)
            assert again.payments is not None and again.payments.rustore is not None
            assert set(again.payments.rustore.products) == set(sold)
            assert again.store_checkout_url == again.payments.rustore.base_url
    finally:
        again.stop()
