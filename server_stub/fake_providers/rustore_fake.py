"""A fake RuStore for tests and the demo, speaking RuStore's Public API formats.

Covered (docs/points.md, "Store purchases (RuStore)"): the ``Public-Token`` header (a wrong or
missing one is refused); the envelope ``{code, message, body, timestamp}``; the v2 payment check
``GET /public/v2/purchase/{invoiceId}`` and its sandbox twin; a consumable's confirmation
``PUT /public/applications/{appId}/purchases/{purchaseId}:confirm`` (only from ``PAID``);
``GET /public/subscription/{token}/state`` (``is_active``) and a subscription's
``:acknowledge``; server notifications ``{id, timestamp, payload}`` with the payload AES-256-GCM
under the console key (INVOICE_STATUS, TEST_EVENT, their _SANDBOX twins), delivered in order
from a thread of their own; a subscription's invoices (:meth:`FakeRuStore.subscription_invoice`)
notified with its token as the ``purchase_token``. Not covered: the JWE token exchange (the fake
takes the token as given), lists and searches of purchases, subscription details beyond
``is_active``, refunds started through the API (a test or the demo refunds with
:meth:`FakeRuStore.set_status`).
"""

from __future__ import annotations

import itertools
import json
import secrets
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from ..clock import Clock, SystemClock
from ..services.store.notifications import encrypt
from .delivery import Delivery, WebhookSender, pay_page

Obj = dict[str, Any]


def _iso(when: datetime) -> str:
    return when.isoformat().replace("+00:00", "Z")


class FakeRuStore:
    """``with serving(FakeRuStore(public_token=…, console_key=…)) as url:`` then
    ``RuStoreClient(token, api_base=url, app_id=fake.app_id)``."""

    def __init__(
        self,
        *,
        public_token: str,
        console_key: bytes,
        app_id: str = "1704024",
        notify_url: str | None = None,
        sandbox: bool = False,
        clock: Clock | None = None,
    ) -> None:
        self.public_token = public_token
        self.console_key = console_key
        self.app_id = app_id
        self.notify_url = notify_url
        self.sandbox = sandbox
        self.clock = clock or SystemClock()
        self.base_url = ""
        self.purchases: dict[str, Obj] = {}
        self.subscriptions: dict[str, bool] = {}
        #: A subscription's invoices: their notifications carry its token as ``purchase_token``.
        self.invoice_tokens: dict[str, str] = {}
        self.acknowledged: set[str] = set()
        #: What the store sells, as its console knows it: product code → (minor units, currency).
        self.products: dict[str, tuple[int, str]] = {}
        #: Every notification built, in order (a test may deliver one again, or out of order).
        self.sent: list[bytes] = []
        #: Build notifications but do not deliver them (a lost notification).
        self.drop_notifications = False
        self._ids = itertools.count(1000)
        self._lock = threading.Lock()
        self._sender = WebhookSender()
        self.app = self._build_app()

    # --- what a buyer (a test, the demo) does --------------------------------------------------

    def create_purchase(
        self,
        product_code: str,
        *,
        user_id: str,
        amount_minor: int = 9900,
        currency: str = "RUB",
        order_id: str | None = None,
    ) -> str:
        """A new invoice (``CREATED``) for ``product_code``; ``user_id`` is the developer payload
        the app sets. Returns the invoice id."""
        with self._lock:
            invoice_id = str(next(self._ids))
            now = self.clock.now()
            self.purchases[invoice_id] = {
                "invoiceId": invoice_id,
                "invoiceDate": _iso(now),
                "refundDate": None,
                "invoiceStatus": "CREATED",
                "developerPayload": user_id,
                "appId": int(self.app_id) if self.app_id.isdigit() else 0,
                "ownerCode": 4384191,
                "paymentInfo": None,
                "purchaseId": secrets.token_hex(16),
                "orderId": order_id or secrets.token_hex(8),
                "productCode": product_code,
                "purchaseType": "ONE_STEP",
                "amount": amount_minor,
                "currency": currency,
                "quantity": 1,
            }
        return invoice_id

    def add_product(self, product_code: str, amount_minor: int, currency: str) -> None:
        self.products[product_code] = (amount_minor, currency)

    def checkout_url(self, invoice_id: str) -> str:
        """The hosted payment page of ``invoice_id`` (Pay / Cancel)."""
        return f"{self.base_url}/checkout/{invoice_id}"

    def pay(self, invoice_id: str) -> None:
        """The buyer pays a consumable: EXECUTED, then PAID (the money on hold for us)."""
        self.set_status(invoice_id, "EXECUTED")
        self.set_status(invoice_id, "PAID")

    def set_status(self, invoice_id: str, status: str, *, notify: bool = True) -> bytes:
        """Move a purchase to ``status`` (a refund: ``REFUNDED``) and notify; returns the
        notification's body."""
        with self._lock:
            purchase = self.purchases[invoice_id]
            old = purchase["invoiceStatus"]
            now = self.clock.now()
            purchase["invoiceStatus"] = status
            if status in ("PAID", "CONFIRMED") and purchase["paymentInfo"] is None:
                purchase["paymentInfo"] = {"paymentDate": _iso(now), "paymentMethod": "CARD"}
            if status == "REFUNDED":
                purchase["refundDate"] = _iso(now)
        body = self.notification(invoice_id, old, status, now)
        if notify:
            self.deliver(body)
        return body

    def add_subscription(self, token: str, *, active: bool = True) -> None:
        self.subscriptions[token] = active

    def subscription_invoice(
        self,
        token: str,
        product_code: str,
        *,
        user_id: str,
        active: bool = True,
        status: str = "CONFIRMED",
    ) -> str:
        """A payment of the subscription ``token`` (its first, a renewal, or one that failed):
        the subscription's state becomes ``active``, and its invoice ``status``, notified with
        the token as the ``purchase_token``. Returns the invoice id."""
        invoice_id = self.create_purchase(product_code, user_id=user_id)
        self.invoice_tokens[invoice_id] = token
        self.subscriptions[token] = active
        self.set_status(invoice_id, status)
        return invoice_id

    # --- notifications -------------------------------------------------------------------------

    def notification(self, invoice_id: str, old: str, new: str, at: datetime) -> bytes:
        purchase = self.purchases[invoice_id]
        kind = "INVOICE_STATUS_SANDBOX" if self.sandbox else "INVOICE_STATUS"
        data = {
            "product_code": purchase["productCode"],
            "change_status_time": _iso(at),
            "status_new": new.lower(),
            "status_old": old.lower(),
            "purchase_token": self.invoice_tokens.get(
                invoice_id, f"{invoice_id}.{purchase['purchaseId'][:6]}"
            ),
            "invoice_id": invoice_id,
            "order_id": purchase["orderId"],
            "purchase_id": purchase["purchaseId"],
        }
        return self.envelope({"notification_type": kind, "app_id": 1, "data": json.dumps(data)})

    def test_event(self) -> bytes:
        kind = "TEST_EVENT_SANDBOX" if self.sandbox else "TEST_EVENT"
        return self.envelope({"notification_type": kind, "app_id": 1, "data": "{}"})

    def envelope(self, payload: Obj, *, key: bytes | None = None) -> bytes:
        body = {
            "id": secrets.token_hex(12),
            "timestamp": _iso(self.clock.now()),
            "payload": encrypt(key or self.console_key, payload),
        }
        raw = json.dumps(body).encode("utf-8")
        self.sent.append(raw)
        return raw

    def deliver(self, body: bytes) -> None:
        if self.notify_url is None or self.drop_notifications:
            return
        headers = {"Content-Type": "application/json"}
        self._sender.send(Delivery(self.notify_url, body, headers, lambda ok, answer: None))

    def flush(self) -> None:
        """Wait until every notification sent so far was answered."""
        self._sender.flush()

    def close(self) -> None:
        self._sender.close()

    # --- the API -------------------------------------------------------------------------------

    def _build_app(self) -> FastAPI:
        app = FastAPI(title="fake RuStore")

        def answer(body: Any, code: str = "OK", status: int = 200, message: str | None = None):  # type: ignore[no-untyped-def]
            return JSONResponse(
                {
                    "code": code,
                    "message": message,
                    "body": body,
                    "timestamp": _iso(self.clock.now()),
                },
                status_code=status,
            )

        def authorised(request: Request) -> bool:
            given = request.headers.get("Public-Token", "")
            return secrets.compare_digest(given.encode(), self.public_token.encode())

        def denied() -> JSONResponse:
            return answer(None, "ERROR", 401, "Jwe token is invalid")

        def purchase(invoice_id: str, request: Request) -> JSONResponse:
            if not authorised(request):
                return denied()
            found = self.purchases.get(invoice_id)
            if found is None:
                return answer(None, "NOT_FOUND", 404, "Purchase not found")
            return answer(dict(found))

        def confirm(app_id: str, purchase_id: str, request: Request) -> JSONResponse:
            if not authorised(request):
                return denied()
            if app_id != self.app_id:
                return answer(None, "NOT_FOUND", 404, "Application not found")
            with self._lock:
                match = [p for p in self.purchases.values() if p["purchaseId"] == purchase_id]
            if not match:
                return answer(None, "NOT_FOUND", 404, "Purchase not found")
            if match[0]["invoiceStatus"] != "PAID":
                return answer(None, "ERROR", 400, "Purchase status must be PAID")
            self.set_status(match[0]["invoiceId"], "CONFIRMED")
            return answer({})

        for prefix in ("/public", "/public/sandbox"):
            app.add_api_route(f"{prefix}/v2/purchase/{{invoice_id}}", purchase, methods=["GET"])
            app.add_api_route(
                f"{prefix}/applications/{{app_id}}/purchases/{{purchase_id}}:confirm",
                confirm,
                methods=["PUT"],
            )

        self._checkout_routes(app, answer)

        @app.get("/public/subscription/{token}/state")
        def state(token: str, request: Request) -> JSONResponse:
            if not authorised(request):
                return denied()
            if token not in self.subscriptions:
                return answer(None, "NOT_FOUND", 404, "Subscription not found")
            return answer({"is_active": self.subscriptions[token]})

        @app.post("/public/glike/subscription/{package}/{subscription}/{token}:acknowledge")
        def acknowledge(package: str, subscription: str, token: str, request: Request) -> Any:
            del package, subscription
            if not authorised(request):
                return denied()
            if token not in self.subscriptions:
                return answer(None, "NOT_FOUND", 404, "Subscription not found")
            self.acknowledged.add(token)
            return Response(status_code=200)  # RuStore: an empty body on success

        return app

    def _checkout_routes(self, app: FastAPI, answer: Callable[..., JSONResponse]) -> None:
        """What RuStore's SDK does on the buyer's device, for a desktop that has no SDK: start a
        purchase of a known product (``POST /demo/invoices``; no server token: the device never
        holds one) and a hosted page whose Pay button takes the money (EXECUTED, then PAID,
        notified as RuStore would) and whose Cancel ends it (CANCELLED)."""

        @app.post("/demo/invoices")
        async def start(request: Request) -> JSONResponse:
            try:
                asked = json.loads(await request.body())
                code, payload = str(asked["product_code"]), str(asked["developer_payload"])
            except (ValueError, KeyError, TypeError):
                return answer(None, "ERROR", 400, "product_code and developer_payload expected")
            if code not in self.products:
                return answer(None, "NOT_FOUND", 404, "Product not found")
            amount, currency = self.products[code]
            invoice_id = self.create_purchase(
                code, user_id=payload, amount_minor=amount, currency=currency
            )
            body = {"invoice_id": invoice_id, "checkout_url": self.checkout_url(invoice_id)}
            return answer(body)

        @app.get("/checkout/{invoice_id}", response_class=HTMLResponse)
        def page(invoice_id: str) -> Response:
            found = self.purchases.get(invoice_id)
            if found is None:
                return HTMLResponse("No such purchase.", status_code=404)
            what = f"{found['productCode']}: {found['amount']} {found['currency']} (minor units)"
            return HTMLResponse(pay_page("Fake RuStore", what, found["invoiceStatus"]))

        @app.post("/checkout/{invoice_id}")
        async def submit(invoice_id: str, request: Request) -> Response:
            form = dict(parse_qsl((await request.body()).decode()))
            found = self.purchases.get(invoice_id)
            if found is None:
                return HTMLResponse("No such purchase.", status_code=404)
            if found["invoiceStatus"] != "CREATED":
                return HTMLResponse("This purchase is over.", status_code=409)
            if form.get("outcome") == "pay":
                self.pay(invoice_id)
            else:
                self.set_status(invoice_id, "CANCELLED")
            return RedirectResponse(self.checkout_url(invoice_id), status_code=303)
