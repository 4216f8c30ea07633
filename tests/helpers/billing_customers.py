"""Customers of billing over HTTP: an account that logs in again after the fake clock moved
(access tokens expire), and one with a paid subscription."""

from __future__ import annotations

import secrets
from datetime import timedelta

from tests.helpers.api import PASSWORD, bearer, fingerprint, register
from tests.helpers.backend import Backend
from tests.helpers.billing import checkout_completed


class Customer:
    """An account that logs in again after the clock moves (tokens expire)."""

    def __init__(self, backend: Backend) -> None:
        self.email, self.fp = f"c-{secrets.token_hex(4)}@example.com", fingerprint()
        self._backend = backend
        self.token = register(backend.client, self.email, self.fp)["token"]
        #: The answer to ``POST /subscriptions/create`` (see :func:`subscribed`).
        self.created: dict[str, object] = {}

    def later(self, days: float) -> str:
        self._backend.clock.advance(timedelta(days=days).total_seconds())
        login = {"email": self.email, "password": PASSWORD, "device_fingerprint": self.fp}
        r = self._backend.client.post("/auth/login", json=login)
        assert r.status_code == 200, r.text
        self.token = r.json()["token"]
        return self.token


def subscribed(backend: Backend, plan: str = "pro") -> Customer:
    """A new account with a paid subscription to ``plan`` (through the recording Stripe)."""
    customer = Customer(backend)
    r = backend.client.post(
        "/subscriptions/create",
        headers=bearer(customer.token),
        json={"plan": plan, "provider": "stripe"},
    )
    assert r.status_code == 201, r.text
    customer.created = r.json()
    price = r.json()["subscription"]["price_minor"]
    event = checkout_completed(r.json()["invoice_id"], backend.clock.now(), price)
    backend.services.billing.apply_event(event)
    return customer
