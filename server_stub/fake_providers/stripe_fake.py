"""A fake Stripe for tests and the demo, speaking Stripe's real wire format.

Covered (docs/billing.md, "Providers and their fakes"): form-encoded requests with nested keys
(``metadata[invoice_id]``, ``line_items[0][price_data][currency]``, ``expand[0]``) and Bearer
API-key auth; Customers (create, search), Checkout Sessions (create, retrieve, list, expand, a
hosted page with a Pay button), PaymentIntents (create with ``confirm``/``off_session``, retrieve,
search by metadata), Refunds (create, list), Events (list with ``delivery_success`` and
``created[gte]``); Stripe's error bodies and statuses (card_error 402 with ``decline_code``,
invalid_request_error 400/404, idempotency_error 400, api_error 500, 401), the
``Idempotency-Key`` replay (``Idempotent-Replayed: true``) and conflict; signed webhook delivery
(``Stripe-Signature``, the same scheme as ``signatures.py`` checks).
"""

from __future__ import annotations

import itertools
import json
import re
import threading
from collections.abc import Callable
from typing import Any

from fastapi.responses import JSONResponse, Response

from ..clock import Clock, SystemClock
from ..services.billing.signatures import stripe_signature_header
from .delivery import Delivery, WebhookSender
from .stripe_wire import API_VERSION, Obj, StripeError, build_app, invalid, search, to_int


class FakeStripe:
    """``with serving(FakeStripe(...)) as url: StripeAdapter(key, api_base=url)``."""

    def __init__(
        self,
        *,
        api_key: str = "sk_test_fake",
        webhook_url: str | None = None,
        webhook_secret: str | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.api_key = api_key
        self.webhook_url = webhook_url
        self.webhook_secret = webhook_secret
        self.clock = clock or SystemClock()
        self.base_url = ""
        self.objects: dict[str, Obj] = {}
        self.events: list[Obj] = []
        #: Events recorded but not delivered (a lost webhook), for the reconciler's tests.
        self.drop_webhooks = False
        self._declines: dict[str, tuple[str, str | None]] = {}
        self._idempotent: dict[str, tuple[str, Obj, int, Obj]] = {}
        self._fail_next: list[int] = []
        self._ids = itertools.count(1)
        self._lock = threading.RLock()
        self._sender = WebhookSender()
        self.app = build_app(self)

    # --- control (tests and the demo) ------------------------------------------------------

    def decline_card(
        self, payment_method: str, decline_code: str, advice: str | None = None
    ) -> None:
        """Every later charge of ``payment_method`` is declined with ``decline_code``."""
        with self._lock:
            self._declines[payment_method] = (decline_code, advice)

    def fail_next(self, count: int = 1, status: int = 500) -> None:
        """The next ``count`` API requests fail with ``status`` before doing anything."""
        with self._lock:
            self._fail_next.extend([status] * count)

    def complete_checkout(self, session_id: str) -> Obj:
        """The customer paid (or, in setup mode, saved the card): the card is kept and the
        webhooks go out (``payment_intent.succeeded``/``setup_intent.succeeded``, then
        ``checkout.session.completed``)."""
        with self._lock:
            session = self._get(session_id, "checkout.session")
            if session["status"] != "open":
                raise invalid(f"This Checkout Session is {session['status']}.")
            payment_method = self._new(
                "pm",
                {
                    "object": "payment_method",
                    "type": "card",
                    "customer": session["customer"],
                    "card": {"brand": "visa", "last4": "4242"},
                },
            )
            if session["mode"] == "setup":
                intent = self._new(
                    "seti",
                    {
                        "object": "setup_intent",
                        "status": "succeeded",
                        "usage": "off_session",
                        "customer": session["customer"],
                        "payment_method": payment_method["id"],
                        "metadata": dict(session["setup_intent_data"].get("metadata", {})),
                    },
                )
                session.update(setup_intent=intent["id"], payment_status="no_payment_required")
                self._emit("setup_intent.succeeded", intent)
            else:
                intent = self._succeeded_intent(
                    amount=session["amount_total"],
                    currency=session["currency"],
                    customer=session["customer"],
                    payment_method=payment_method["id"],
                    metadata=dict(session["payment_intent_data"].get("metadata", {})),
                    description=session["payment_intent_data"].get("description"),
                    setup_future_usage="off_session",
                )
                session.update(payment_intent=intent["id"], payment_status="paid")
            session["status"] = "complete"
            self._emit("checkout.session.completed", session)
            return dict(session)

    def expire_checkout(self, session_id: str) -> None:
        with self._lock:
            session = self._get(session_id, "checkout.session")
            session["status"] = "expired"
            self._emit("checkout.session.expired", session)

    def session(self, session_id: str) -> Obj | None:
        """A copy of a Checkout Session, or ``None``."""
        with self._lock:
            found = self.objects.get(session_id)
            return dict(found) if found and found["object"] == "checkout.session" else None

    def flush_webhooks(self) -> None:
        """Wait until every webhook sent so far was answered."""
        self._sender.flush()

    def of_type(self, object_type: str) -> list[Obj]:
        with self._lock:
            return [dict(o) for o in self.objects.values() if o["object"] == object_type]

    def close(self) -> None:
        self._sender.close()

    # --- state -----------------------------------------------------------------------------

    def _new(self, prefix: str, fields: Obj) -> Obj:
        obj: Obj = {
            "id": f"{prefix}_{next(self._ids):024d}",
            "livemode": False,
            "created": int(self.clock.now().timestamp()),
            "metadata": {},
        }
        obj.update(fields)
        self.objects[obj["id"]] = obj
        return obj

    def _get(self, object_id: str, object_type: str) -> Obj:
        obj = self.objects.get(object_id)
        if obj is None or obj["object"] != object_type:
            raise invalid(f"No such {object_type}: '{object_id}'", status=404, param="id")
        return obj

    def _emit(self, event_type: str, obj: Obj) -> None:
        event = self._new(
            "evt",
            {
                "object": "event",
                "type": event_type,
                "api_version": API_VERSION,
                "data": {"object": json.loads(json.dumps(obj))},
                "pending_webhooks": 1,
                "request": {"id": None, "idempotency_key": None},
                "delivered": False,
            },
        )
        del event["metadata"]
        self.events.append(event)
        if self.drop_webhooks or not self.webhook_url or not self.webhook_secret:
            return
        body = json.dumps({k: v for k, v in event.items() if k != "delivered"}).encode()
        stamp = int(self.clock.now().timestamp())

        def done(ok: bool, _answer: bytes, event: Obj = event) -> None:
            with self._lock:
                event["delivered"] = ok
                event["pending_webhooks"] = 0 if ok else 1

        self._sender.send(
            Delivery(
                self.webhook_url,
                body,
                {
                    "Content-Type": "application/json; charset=utf-8",
                    "Stripe-Signature": stripe_signature_header(self.webhook_secret, body, stamp),
                },
                done,
            )
        )

    def _succeeded_intent(self, **fields: Any) -> Obj:
        intent = self._new(
            "pi",
            {
                "object": "payment_intent",
                "status": "succeeded",
                "amount_received": fields["amount"],
                "last_payment_error": None,
                "setup_future_usage": None,
                **fields,
            },
        )
        charge = self._new(
            "ch",
            {
                "object": "charge",
                "status": "succeeded",
                "paid": True,
                "amount": fields["amount"],
                "amount_refunded": 0,
                "refunded": False,
                "currency": fields["currency"],
                "payment_intent": intent["id"],
                "metadata": fields["metadata"],
            },
        )
        intent["latest_charge"] = charge["id"]
        self._emit("payment_intent.succeeded", intent)
        return intent

    def _expand(self, obj: Obj, paths: list[str]) -> Obj:
        out = dict(obj)
        for path in paths:
            field = path.removeprefix("data.")
            if isinstance(out.get(field), str) and out[field] in self.objects:
                out[field] = dict(self.objects[out[field]])
        return out

    # --- API -------------------------------------------------------------------------------

    def _customers(self, params: Obj) -> Obj:
        return self._new(
            "cus",
            {
                "object": "customer",
                "email": params.get("email"),
                "metadata": dict(params.get("metadata") or {}),
            },
        )

    def _create_session(self, params: Obj) -> Obj:
        mode = params.get("mode")
        if mode not in ("payment", "setup"):
            raise invalid("Invalid mode: must be one of payment, setup", param="mode")
        for name in ("success_url", "customer"):
            if not params.get(name):
                raise invalid(f"Missing required param: {name}.", param=name)
        self._get(params["customer"], "customer")
        amount: int | None = None
        currency = params.get("currency")
        if mode == "payment":
            items = params.get("line_items")
            if not isinstance(items, list) or not items:
                raise invalid("Missing required param: line_items.", param="line_items")
            amount = 0
            for item in items:
                price = item.get("price_data") or {}
                amount += to_int(price, "unit_amount") * to_int(item, "quantity")
                currency = price.get("currency")
        now = int(self.clock.now().timestamp())
        session = self._new(
            "cs_test",
            {
                "object": "checkout.session",
                "mode": mode,
                "status": "open",
                "payment_status": "unpaid",
                "customer": params["customer"],
                "client_reference_id": params.get("client_reference_id"),
                "amount_total": amount,
                "currency": currency,
                "success_url": params["success_url"],
                "cancel_url": params.get("cancel_url"),
                "metadata": dict(params.get("metadata") or {}),
                "payment_intent": None,
                "setup_intent": None,
                "expires_at": now + 24 * 3600,
                "payment_intent_data": params.get("payment_intent_data") or {},
                "setup_intent_data": params.get("setup_intent_data") or {},
            },
        )
        session["url"] = f"{self.base_url}/c/pay/{session['id']}"
        return session

    def _create_intent(self, params: Obj) -> tuple[int, Obj]:
        amount = to_int(params, "amount")
        if amount < 1:
            raise invalid("Amount must be at least 1", param="amount")
        payment_method = params.get("payment_method") or ""
        self._get(payment_method, "payment_method")
        customer = self._get(params.get("customer") or "", "customer")
        if self.objects[payment_method]["customer"] != customer["id"]:
            raise invalid("The provided PaymentMethod does not belong to the Customer.")
        if params.get("confirm") != "true":
            raise invalid("This fake confirms on creation only: pass confirm=true.")
        fields = {
            "amount": amount,
            "currency": params.get("currency"),
            "customer": customer["id"],
            "payment_method": payment_method,
            "description": params.get("description"),
            "metadata": dict(params.get("metadata") or {}),
        }
        decline = self._declines.get(payment_method)
        if decline is None:
            return 200, self._succeeded_intent(**fields)
        code, advice = decline
        error = {
            "type": "card_error",
            "code": "expired_card" if code == "expired_card" else "card_declined",
            "decline_code": code,
            "message": "Your card was declined.",
            "advice_code": advice,
            "payment_method": {"id": payment_method},
        }
        intent = self._new(
            "pi",
            {
                "object": "payment_intent",
                "status": "requires_payment_method",
                "amount_received": 0,
                "last_payment_error": error,
                "setup_future_usage": None,
                "latest_charge": None,
                **fields,
            },
        )
        self._emit("payment_intent.payment_failed", intent)
        return 402, {"error": {**error, "payment_intent": dict(intent)}}

    def _create_refund(self, params: Obj) -> Obj:
        intent = self._get(params.get("payment_intent") or "", "payment_intent")
        charge = self.objects.get(intent.get("latest_charge") or "")
        if intent["status"] != "succeeded" or charge is None:
            raise invalid("This PaymentIntent has no successful charge to refund.")
        left = charge["amount"] - charge["amount_refunded"]
        amount = to_int(params, "amount") if "amount" in params else left
        if amount < 1 or amount > left:
            raise invalid(
                f"Refund amount ({amount}) is greater than unrefunded amount.", param="amount"
            )
        refund = self._new(
            "re",
            {
                "object": "refund",
                "amount": amount,
                "status": "succeeded",
                "charge": charge["id"],
                "payment_intent": intent["id"],
                "currency": charge["currency"],
                "metadata": dict(params.get("metadata") or {}),
            },
        )
        charge["amount_refunded"] += amount
        charge["refunded"] = charge["amount_refunded"] == charge["amount"]
        self._emit("charge.refunded", charge)
        self._emit("refund.created", refund)
        return refund

    def _list(self, url: str, data: list[Obj]) -> Obj:
        return {"object": "list", "data": data, "has_more": False, "url": url}

    def _get_route(self, path: str, params: Obj) -> Obj:
        expand = params.get("expand") or []
        if path in ("/v1/customers/search", "/v1/payment_intents/search"):
            kind = "customer" if "customers" in path else "payment_intent"
            found = search(str(params.get("query", "")), self.of_type(kind))
            return {
                "object": "search_result",
                "data": found,
                "has_more": False,
                "next_page": None,
                "url": path,
            }
        if path == "/v1/checkout/sessions":
            sessions = [
                self._expand(s, expand)
                for s in self.of_type("checkout.session")
                if s["customer"] == params.get("customer")
            ]
            return self._list(path, sorted(sessions, key=lambda s: -s["created"]))
        if path == "/v1/refunds":
            refunds = [
                r
                for r in self.of_type("refund")
                if r["payment_intent"] == params.get("payment_intent")
            ]
            return self._list(path, refunds)
        if path == "/v1/events":
            since = int((params.get("created") or {}).get("gte") or 0)
            wanted = params.get("delivery_success")
            events = [
                {k: v for k, v in e.items() if k != "delivered"}
                for e in self.events
                if e["created"] >= since
                and (wanted is None or str(e["delivered"]).lower() == wanted)
            ]
            return self._list(path, events[::-1])
        match = re.fullmatch(r"/v1/(checkout/sessions|payment_intents|customers)/([\w-]+)", path)
        if match:
            kind = {
                "checkout/sessions": "checkout.session",
                "payment_intents": "payment_intent",
                "customers": "customer",
            }[match[1]]
            return self._expand(self._get(match[2], kind), expand)
        raise invalid(f"Unrecognized request URL (GET: {path}).", status=404)

    def _post_route(self, path: str, params: Obj) -> tuple[int, Obj]:
        routes: dict[str, Callable[[Obj], Obj]] = {
            "/v1/customers": self._customers,
            "/v1/checkout/sessions": self._create_session,
            "/v1/refunds": self._create_refund,
        }
        if path == "/v1/payment_intents":
            return self._create_intent(params)
        if path in routes:
            return 200, routes[path](params)
        raise invalid(f"Unrecognized request URL (POST: {path}).", status=404)

    def api(self, method: str, path: str, headers: dict[str, str], params: Obj) -> Response:
        with self._lock:
            if self._fail_next:
                status = self._fail_next.pop(0)
                return _error(status, "api_error", "An unknown error occurred.")
            if headers.get("authorization") != f"Bearer {self.api_key}":
                return _error(401, "invalid_request_error", "Invalid API Key provided.")
            key = headers.get("idempotency-key") if method == "POST" else None
            if key is not None and key in self._idempotent:
                first_path, first_params, status, body = self._idempotent[key]
                if (first_path, first_params) != (path, params):
                    return _error(400, "idempotency_error", _REUSED_KEY)
                return JSONResponse(
                    body, status_code=status, headers={"Idempotent-Replayed": "true"}
                )
            try:
                if method == "GET":
                    status, body = 200, self._get_route(path, params)
                else:
                    status, body = self._post_route(path, params)
            except StripeError as exc:
                status, body = exc.status, {"error": exc.error}
            body = json.loads(json.dumps(body))
            if key is not None:
                self._idempotent[key] = (path, params, status, body)
            return JSONResponse(
                body, status_code=status, headers={"Request-Id": f"req_{next(self._ids)}"}
            )


_REUSED_KEY = (
    "Keys for idempotent requests can only be used with the same parameters they were first "
    "used with."
)


def _error(status: int, error_type: str, message: str) -> Response:
    return JSONResponse({"error": {"type": error_type, "message": message}}, status_code=status)
