"""CloudPayments as a payment processor: its JSON API with HTTP Basic auth (Public ID : API
secret), through httpx.

An order (``/orders/create``) is the checkout: its page takes the first payment and CloudPayments
keeps the card as a Token (its Pay notification carries it); ``/payments/tokens/charge`` charges
the Token later; ``/payments/refund`` gives money back; ``/v2/payments/find`` tells the truth of
an invoice. Amounts on its wire are decimal major units, converted exactly. Our idempotency key
goes as ``X-Request-ID`` (CloudPayments answers a repeated one with the first answer).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

import httpx

from ..contract import (
    ChargeOutcome,
    Checkout,
    ProviderEvent,
    ProviderName,
    ProviderRefused,
    ProviderUnavailable,
    RefundOutcome,
)
from ..declines import cloudpayments_decline_is_hard
from . import cloudpayments_events as ev
from .amounts import format_major, minor_to_major

log = logging.getLogger("tgflow.server.billing.cloudpayments")

CheckRequest = ev.CheckRequest
read_check = ev.read_check

#: What a zero-amount checkout (a trial) authorizes to keep the card, in minor units.
VERIFY_AMOUNT_MINOR = 100


def json_body(value: object) -> str:
    """JSON with ``Decimal`` amounts written as exact numbers (``json`` cannot, floats lie)."""
    if isinstance(value, Decimal):
        return format_major(value)
    if isinstance(value, Mapping):
        items = (f"{json.dumps(str(k))}:{json_body(v)}" for k, v in value.items())
        return "{" + ",".join(items) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(json_body(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False)


class CloudPaymentsAdapter:
    name = ProviderName.CLOUDPAYMENTS

    def __init__(
        self,
        public_id: str,
        api_secret: str,
        *,
        api_base: str = "https://api.cloudpayments.ru",
        timeout_s: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not public_id or not api_secret:
            raise ValueError("CloudPayments needs its Public ID and API secret")
        self._http = httpx.Client(
            base_url=api_base.rstrip("/"),
            auth=httpx.BasicAuth(public_id, api_secret),
            timeout=timeout_s,
            transport=transport,
        )

    def close(self) -> None:
        self._http.close()

    def _post(
        self, what: str, path: str, body: Mapping[str, Any], request_id: str | None = None
    ) -> Mapping[str, Any]:
        headers = {"Content-Type": "application/json"}
        if request_id is not None:
            headers["X-Request-ID"] = request_id
        try:
            response = self._http.post(path, content=json_body(body), headers=headers)
        except httpx.HTTPError as exc:
            raise ProviderUnavailable(f"CloudPayments {what}: {type(exc).__name__}") from exc
        if response.status_code >= 500 or response.status_code == 429:
            raise ProviderUnavailable(f"CloudPayments {what}: HTTP {response.status_code}")
        if response.status_code >= 400:
            log.warning("CloudPayments %s refused: HTTP %s", what, response.status_code)
            raise ProviderRefused(f"CloudPayments {what}: HTTP {response.status_code}")
        try:
            answer = json.loads(response.text, parse_float=Decimal)
        except ValueError as exc:
            raise ProviderUnavailable(f"CloudPayments {what}: not JSON") from exc
        if not isinstance(answer, Mapping) or "Success" not in answer:
            raise ProviderUnavailable(f"CloudPayments {what}: not an API answer")
        return answer

    @staticmethod
    def _model(what: str, answer: Mapping[str, Any]) -> Mapping[str, Any]:
        model = answer.get("Model")
        if answer.get("Success") is not True or not isinstance(model, Mapping):
            raise ProviderRefused(f"CloudPayments {what}: {answer.get('Message') or 'refused'}")
        return model

    # --- money ------------------------------------------------------------------------------

    def create_checkout(
        self,
        *,
        invoice_id: str,
        subscription_id: str,
        customer_email: str,
        description: str,
        amount_minor: int,
        currency: str,
        success_url: str,
        cancel_url: str,
        idempotency_key: str,
    ) -> Checkout:
        if amount_minor < 0:
            raise ProviderRefused("a checkout cannot charge a negative amount")
        verify = amount_minor == 0
        amount = minor_to_major(VERIFY_AMOUNT_MINOR if verify else amount_minor, currency)
        body = {
            "Amount": amount,
            "Currency": currency.upper(),
            "Description": description,
            "Email": customer_email,
            "InvoiceId": invoice_id,
            "AccountId": subscription_id,
            # Two-step for the card check: authorized, never confirmed, so voided.
            "RequireConfirmation": verify,
            "SuccessRedirectUrl": success_url,
            "FailRedirectUrl": cancel_url,
            "JsonData": {ev.PURPOSE: ev.VERIFY if verify else ev.CHECKOUT},
        }
        model = self._model("order", self._post("order", "/orders/create", body, idempotency_key))
        url, order_id = model.get("Url"), model.get("Id")
        if not isinstance(url, str) or not url or order_id is None:
            raise ProviderRefused("CloudPayments returned an order without its URL")
        return Checkout(url=url, checkout_ref=str(order_id))

    def charge(
        self,
        *,
        invoice_id: str,
        subscription_id: str,
        payment_method_ref: str,
        amount_minor: int,
        currency: str,
        description: str,
        idempotency_key: str,
    ) -> ChargeOutcome:
        if amount_minor <= 0:
            raise ProviderRefused("a charge must be of a positive amount")
        body = {
            "Token": payment_method_ref,
            "Amount": minor_to_major(amount_minor, currency),
            "Currency": currency.upper(),
            "AccountId": subscription_id,
            "InvoiceId": invoice_id,
            "Description": description,
            "JsonData": {ev.PURPOSE: ev.CHARGE},
        }
        answer = self._post("charge", "/payments/tokens/charge", body, idempotency_key)
        model = answer.get("Model")
        transaction = (
            str(model["TransactionId"])
            if isinstance(model, Mapping) and model.get("TransactionId") is not None
            else None
        )
        if answer.get("Success") is True:
            return ChargeOutcome(succeeded=True, payment_ref=transaction)
        reason = model.get("ReasonCode") if isinstance(model, Mapping) else None
        if isinstance(reason, int) and not isinstance(reason, bool):
            return ChargeOutcome(
                succeeded=False,
                payment_ref=transaction,
                decline_code=str(reason),
                hard_decline=cloudpayments_decline_is_hard(reason),
            )
        raise ProviderRefused(f"CloudPayments charge: {answer.get('Message') or 'refused'}")

    def refund(
        self, *, payment_ref: str, amount_minor: int, currency: str, idempotency_key: str
    ) -> RefundOutcome:
        if amount_minor <= 0:
            raise ProviderRefused("a refund must be of a positive amount")
        if not payment_ref.isdigit():
            raise ProviderRefused("a CloudPayments payment is a numeric TransactionId")
        body = {"TransactionId": int(payment_ref), "Amount": minor_to_major(amount_minor, currency)}
        answer = self._post("refund", "/payments/refund", body, idempotency_key)
        model = self._model("refund", answer)
        return RefundOutcome(
            refund_ref=str(model.get("TransactionId")), amount_minor=amount_minor, succeeded=True
        )

    # --- truth -----------------------------------------------------------------------------

    def payment_truth(self, invoice_id: str) -> list[ProviderEvent]:
        """Every transaction CloudPayments has for the invoice, typed as the notification it
        would have sent (so its event id is that notification's)."""
        answer = self._post("find", "/v2/payments/find", {"InvoiceId": invoice_id})
        if answer.get("Success") is not True:
            return []  # "Not found"
        model = answer.get("Model")
        transactions = model if isinstance(model, list) else [model]
        events: list[ProviderEvent] = []
        for transaction in transactions:
            if not isinstance(transaction, Mapping):
                continue
            fields = dict(transaction)
            fields.setdefault("Data", transaction.get("JsonData"))
            event = ev.notification_event(_notification_type(fields), fields)
            if event is not None:
                events.append(event)
        return sorted(events, key=lambda e: (e.occurred_at, e.event_id))

    def undelivered_events(self, since: datetime) -> list[ProviderEvent]:
        return []  # CloudPayments keeps no list of notifications it failed to deliver

    def parse_event(self, payload: Mapping[str, Any]) -> ProviderEvent | None:
        notification_type = payload.get(ev.NOTIFICATION_TYPE)
        if not isinstance(notification_type, str):
            raise ValueError(f"a CloudPayments notification comes with its {ev.NOTIFICATION_TYPE}")
        return ev.notification_event(notification_type, payload)


def _notification_type(transaction: Mapping[str, Any]) -> str:
    """The notification a transaction of ``/payments/find`` corresponds to."""
    if transaction.get("OperationType") == "Refund":
        return "Refund"
    status = transaction.get("Status")
    if status == "Declined":
        return "Fail"
    if status == "Cancelled":
        return "Cancel"
    if (
        status == "Completed"
        and transaction.get("ConfirmDateIso")
        and transaction.get("AuthDateIso") != transaction.get("ConfirmDateIso")
    ):
        return "Confirm"
    return "Pay"


__all__ = ["CheckRequest", "CloudPaymentsAdapter", "read_check"]
