"""A fake CloudPayments for tests and the demo, speaking CloudPayments' real wire format.

Covered (docs/billing.md, "Providers and their fakes"): HTTP Basic auth (Public ID : API secret);
JSON bodies with decimal major-unit amounts; the answer ``{"Success", "Message", "Model"}`` (a
decline is ``Success: false`` with the transaction's ``ReasonCode``, HTTP 200); ``X-Request-ID``
replay; ``/test``, ``/orders/create`` (with a hosted page and its Pay button),
``/payments/tokens/charge``, ``/payments/refund``, ``/payments/find`` and ``/v2/payments/find``;
notifications (Check, answered synchronously, then Pay; Fail; Refund) form-encoded (or JSON)
with ``Content-HMAC``/``X-Content-HMAC`` as ``signatures.py`` checks. Each notification type goes
to its own URL, as CloudPayments' back office configures them: ``notify_url`` with ``{type}``
(``check``, ``pay``, ``fail``, ``refund``) in it.
"""

from __future__ import annotations

import base64
import html
import itertools
import json
import secrets
import threading
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl, urlencode

from fastapi import FastAPI, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from starlette.concurrency import run_in_threadpool

from ..clock import Clock, SystemClock
from ..services.billing.providers.amounts import format_major, major_to_minor
from ..services.billing.providers.cloudpayments_adapter import json_body
from ..services.billing.signatures import cloudpayments_hmac
from .delivery import Delivery, WebhookSender, pay_page

Obj = dict[str, Any]

#: Reason and cardholder message of the decline codes the fake is told to use.
REASONS: dict[int, tuple[str, str]] = {
    5005: ("DoNotHonor", "Свяжитесь с вашим банком или воспользуйтесь другой картой"),
    5041: ("LostCard", "Свяжитесь с вашим банком или воспользуйтесь другой картой"),
    5043: ("StolenCard", "Свяжитесь с вашим банком или воспользуйтесь другой картой"),
    5051: ("InsufficientFunds", "Недостаточно средств на карте"),
    5054: ("ExpiredCard", "Проверьте правильность введенных данных карты"),
    5091: ("Timeout", "Повторите попытку позже"),
}
CURRENCY_CODES = {"RUB": 0, "USD": 1, "EUR": 2}


class _Refused(Exception):
    """``Success: false`` with a message (a bad request, an unknown payment)."""


class FakeCloudPayments:
    """``with serving(FakeCloudPayments(api_secret=…)) as url:`` then
    ``CloudPaymentsAdapter(public_id, api_secret, api_base=url)``."""

    def __init__(
        self,
        *,
        api_secret: str,
        public_id: str = "pk_fake",
        notify_url: str | None = None,
        notify_json: bool = False,
        clock: Clock | None = None,
    ) -> None:
        self.public_id = public_id
        self.api_secret = api_secret
        self.notify_url = notify_url
        self.notify_json = notify_json
        self.clock = clock or SystemClock()
        self.base_url = ""
        self.orders: dict[str, Obj] = {}
        self.transactions: dict[int, Obj] = {}
        #: Notifications recorded but not delivered (a lost webhook).
        self.drop_notifications = False
        self.sent: list[tuple[str, Obj]] = []
        self._declines: dict[str, int] = {}
        self._replies: dict[str, Obj] = {}
        self._fail_next: list[int] = []
        self._ids = itertools.count(1001)
        self._lock = threading.RLock()
        self._sender = WebhookSender()
        self.app = self._build_app()

    # --- control ---------------------------------------------------------------------------

    def decline_token(self, token: str, reason_code: int) -> None:
        """Every later charge of ``token`` is declined with ``reason_code``."""
        with self._lock:
            self._declines[token] = reason_code

    def fail_next(self, count: int = 1, status: int = 500) -> None:
        with self._lock:
            self._fail_next.extend([status] * count)

    def pay_order(self, order_id: str) -> Obj:
        """The customer paid the order on its page: Check (its answer may refuse the payment),
        then Pay (or Fail), carrying the card's Token."""
        with self._lock:
            order = self.orders.get(order_id)
            if order is None or order["Status"] != "Created":
                raise _Refused("The order is not open")
            token = secrets.token_hex(32).upper()
            two_step = bool(order["RequireConfirmation"])
            transaction = self._transaction(order, token, "Authorized" if two_step else "Completed")
        code = self._check(transaction)
        with self._lock:
            if code != 0:
                self._decline(transaction, 5204 if code != 13 else 5005)
                self._notify("Fail", transaction)
                return dict(transaction)
            order["Status"] = "Paid"
            self._notify("Pay", transaction)
            return dict(transaction)

    def flush_webhooks(self) -> None:
        self._sender.flush()

    def close(self) -> None:
        self._sender.close()

    # --- state -----------------------------------------------------------------------------

    def _now_iso(self) -> str:
        return self.clock.now().strftime("%Y-%m-%dT%H:%M:%S")

    def _transaction(self, source: Obj, token: str, status: str) -> Obj:
        now = self._now_iso()
        transaction: Obj = {
            "TransactionId": next(self._ids),
            "OperationType": "Payment",
            "Amount": source["Amount"],
            "Currency": source["Currency"],
            "CurrencyCode": CURRENCY_CODES.get(source["Currency"], 0),
            "InvoiceId": source.get("InvoiceId"),
            "AccountId": source.get("AccountId"),
            "Email": source.get("Email"),
            "Description": source.get("Description"),
            "JsonData": source.get("JsonData"),
            "CreatedDateIso": now,
            "AuthDateIso": now,
            "ConfirmDateIso": None if status == "Authorized" else now,
            "TestMode": True,
            "CardFirstSix": "424242",
            "CardLastFour": "4242",
            "CardExpDate": "12/30",
            "CardType": "Visa",
            "Issuer": "Fake Bank",
            "Status": status,
            "StatusCode": 2 if status == "Authorized" else 3,
            "Reason": "Approved",
            "ReasonCode": 0,
            "CardHolderMessage": "Оплата успешно проведена",
            "Token": token,
            "RefundedAmount": Decimal(0),
        }
        self.transactions[transaction["TransactionId"]] = transaction
        return transaction

    def _decline(self, transaction: Obj, reason_code: int) -> None:
        reason, message = REASONS.get(reason_code, ("Declined", "Операция отклонена"))
        transaction.update(
            Status="Declined",
            StatusCode=5,
            Reason=reason,
            ReasonCode=reason_code,
            CardHolderMessage=message,
            ConfirmDateIso=None,
        )

    def _fields(self, kind: str, transaction: Obj) -> Obj:
        """A transaction as CloudPayments' notification of ``kind`` names it."""
        fields: Obj = {
            "TransactionId": transaction["TransactionId"],
            "Amount": format_major(transaction["Amount"]),
            "DateTime": transaction["CreatedDateIso"].replace("T", " "),
            "InvoiceId": transaction.get("InvoiceId") or "",
            "AccountId": transaction.get("AccountId") or "",
            "Email": transaction.get("Email") or "",
            "Data": json.dumps(transaction["JsonData"]) if transaction.get("JsonData") else "",
        }
        if kind == "Refund":
            fields.update(
                PaymentTransactionId=transaction["PaymentTransactionId"], OperationType="Refund"
            )
            return fields
        fields.update(
            Currency=transaction["Currency"],
            OperationType="Payment",
            CardFirstSix=transaction["CardFirstSix"],
            CardLastFour=transaction["CardLastFour"],
            CardType=transaction["CardType"],
            CardExpDate=transaction["CardExpDate"],
            TestMode="1",
            Status=transaction["Status"],
            Description=transaction.get("Description") or "",
        )
        if kind == "Fail":
            fields.update(Reason=transaction["Reason"], ReasonCode=transaction["ReasonCode"])
        else:
            fields.update(Token=transaction["Token"], GatewayName="Fake", TotalFee="0")
        return fields

    def _delivery(self, kind: str, transaction: Obj) -> Delivery | None:
        fields = self._fields(kind, transaction)
        self.sent.append((kind, fields))
        if self.drop_notifications or not self.notify_url:
            return None
        if self.notify_json:  # amounts are JSON numbers there
            numbers = {**fields, "Amount": Decimal(fields["Amount"])}
            body, content_type = json_body(numbers).encode(), "application/json"
        else:
            body, content_type = urlencode(fields).encode(), "application/x-www-form-urlencoded"
        signature = cloudpayments_hmac(self.api_secret, body)
        headers = {
            "Content-Type": content_type,
            "Content-HMAC": signature,
            "X-Content-HMAC": signature,
        }
        return Delivery(
            self.notify_url.replace("{type}", kind.lower()), body, headers, lambda ok, answer: None
        )

    def _notify(self, kind: str, transaction: Obj) -> None:
        delivery = self._delivery(kind, transaction)
        if delivery is not None:
            self._sender.send(delivery)

    def _check(self, transaction: Obj) -> int:
        """The synchronous Check: the merchant's ``{"code": 0}`` lets the payment go on."""
        with self._lock:
            delivery = self._delivery("Check", transaction)
        if delivery is None:
            return 0
        ok, answer = self._sender.post_now(delivery)
        try:
            code = json.loads(answer).get("code") if ok else 13
        except (ValueError, AttributeError):
            code = 13
        return code if isinstance(code, int) else 13

    # --- API -------------------------------------------------------------------------------

    def _amount(self, body: Obj) -> tuple[Decimal, str]:
        currency = str(body.get("Currency") or "RUB").upper()
        amount = body.get("Amount")
        if currency not in CURRENCY_CODES or not isinstance(amount, Decimal | int):
            raise _Refused("Amount and Currency are required")
        if major_to_minor(amount, currency) <= 0:
            raise _Refused("Amount must be positive")
        return Decimal(amount), currency

    def _create_order(self, body: Obj) -> Obj:
        amount, currency = self._amount(body)
        order_id = secrets.token_urlsafe(12)
        order = {
            "Id": order_id,
            "Number": len(self.orders) + 1,
            "Amount": amount,
            "Currency": currency,
            "CurrencyCode": CURRENCY_CODES[currency],
            "Email": body.get("Email"),
            "Description": body.get("Description"),
            "RequireConfirmation": bool(body.get("RequireConfirmation")),
            "Url": f"{self.base_url}/d/{order_id}",
            "InvoiceId": body.get("InvoiceId"),
            "AccountId": body.get("AccountId"),
            "JsonData": body.get("JsonData"),
            "SuccessRedirectUrl": body.get("SuccessRedirectUrl"),
            "FailRedirectUrl": body.get("FailRedirectUrl"),
            "CreatedDateIso": self._now_iso(),
            "Status": "Created",
            "StatusCode": 0,
        }
        self.orders[order_id] = order
        return order

    def _charge(self, body: Obj) -> tuple[bool, Obj]:
        amount, currency = self._amount(body)
        token = body.get("Token")
        if not isinstance(token, str) or not any(
            t.get("Token") == token for t in self.transactions.values()
        ):
            raise _Refused("Token not found")
        source = {**body, "Amount": amount, "Currency": currency}
        transaction = self._transaction(source, token, "Completed")
        if token in self._declines:
            self._decline(transaction, self._declines[token])
            self._notify("Fail", transaction)
            return False, transaction
        self._notify("Pay", transaction)
        return True, transaction

    def _refund(self, body: Obj) -> Obj:
        payment = self.transactions.get(body.get("TransactionId"))  # type: ignore[arg-type]
        if (
            payment is None
            or payment["Status"] != "Completed"
            or payment["OperationType"] != "Payment"
        ):
            raise _Refused("Transaction not found")
        amount, _ = self._amount({**body, "Currency": payment["Currency"]})
        if amount > payment["Amount"] - payment["RefundedAmount"]:
            raise _Refused("Refund amount exceeds the payment")
        payment["RefundedAmount"] += amount
        refund = self._transaction({**payment, "Amount": amount}, "", "Completed")
        refund.update(
            OperationType="Refund", PaymentTransactionId=payment["TransactionId"], Token=None
        )
        self._notify("Refund", refund)
        return {"TransactionId": refund["TransactionId"]}

    def _found(self, invoice_id: object) -> list[Obj]:
        return [dict(t) for t in self.transactions.values() if t["InvoiceId"] == invoice_id]

    def api(
        self, path: str, authorization: str | None, request_id: str | None, body: Obj
    ) -> Response:
        credentials = f"{self.public_id}:{self.api_secret}".encode()
        expected = "Basic " + base64.b64encode(credentials).decode()
        with self._lock:
            if self._fail_next:
                return Response("Internal Server Error", status_code=self._fail_next.pop(0))
            if authorization != expected:
                return Response(status_code=401)
            if request_id is not None and request_id in self._replies:
                return self._answer(self._replies[request_id])
            answer: Obj
            try:
                if path == "/test":
                    answer = {"Success": True, "Message": request_id or "", "Model": None}
                elif path == "/orders/create":
                    answer = {"Success": True, "Message": None, "Model": self._create_order(body)}
                elif path == "/payments/tokens/charge":
                    ok, transaction = self._charge(body)
                    answer = {"Success": ok, "Message": None, "Model": transaction}
                elif path == "/payments/refund":
                    answer = {"Success": True, "Message": None, "Model": self._refund(body)}
                elif path in ("/payments/find", "/v2/payments/find"):
                    found = self._found(body.get("InvoiceId"))
                    if not found:
                        raise _Refused("Not found")
                    model: Any = found if path.startswith("/v2") else found[-1]
                    answer = {"Success": True, "Message": None, "Model": model}
                else:
                    return Response(status_code=404)
            except _Refused as exc:
                answer = {"Success": False, "Message": str(exc), "Model": None}
            if request_id is not None:
                self._replies[request_id] = answer
            return self._answer(answer)

    @staticmethod
    def _answer(answer: Obj) -> Response:
        return Response(json_body(answer), media_type="application/json")

    def _build_app(self) -> FastAPI:
        app = FastAPI(title="fake CloudPayments", openapi_url=None, docs_url=None, redoc_url=None)

        @app.get("/d/{order_id}", response_class=HTMLResponse)
        def order_page(order_id: str) -> str:
            with self._lock:
                order = self.orders.get(order_id)
                if order is None:
                    return "<!doctype html><title>Not found</title><p>No such order.</p>"
                what = f"{format_major(order['Amount'])} {order['Currency']}"
                state = order["Status"]
            return pay_page("Fake CloudPayments", what, state)

        @app.post("/d/{order_id}")
        async def order_submit(order_id: str, request: Request) -> Response:
            form = dict(parse_qsl((await request.body()).decode()))
            with self._lock:
                order = dict(self.orders.get(order_id) or {})
            if not order:
                return HTMLResponse("No such order.", status_code=404)
            if form.get("outcome") != "pay":
                return RedirectResponse(order["FailRedirectUrl"] or "/", status_code=303)
            try:
                # The Check waits for the merchant's answer: off the event loop.
                transaction = await run_in_threadpool(self.pay_order, order_id)
            except _Refused as exc:
                return HTMLResponse(html.escape(str(exc)), status_code=400)
            paid = transaction["Status"] != "Declined"
            target = order["SuccessRedirectUrl"] if paid else order["FailRedirectUrl"]
            return RedirectResponse(target or "/", status_code=303)

        @app.post("/{path:path}")
        async def api(path: str, request: Request) -> Response:
            raw = await request.body()
            try:
                if request.headers.get("content-type", "").startswith("application/json"):
                    body = json.loads(raw or b"{}", parse_float=Decimal)
                else:
                    body = dict(parse_qsl(raw.decode()))
            except ValueError:
                body = None
            if not isinstance(body, dict):
                return JSONResponse({"Success": False, "Message": "Invalid request"})
            return self.api(
                f"/{path}",
                request.headers.get("authorization"),
                request.headers.get("x-request-id"),
                body,
            )

        return app
