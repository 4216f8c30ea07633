"""The fake payment providers served for a test, with their adapters pointed at them, and
provider payloads in the providers' real shapes (from Stripe's and CloudPayments' docs)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from server_stub.clock import FakeClock
from server_stub.fake_providers.cloudpayments_fake import FakeCloudPayments
from server_stub.fake_providers.delivery import serving
from server_stub.fake_providers.stripe_fake import FakeStripe
from server_stub.services.billing.providers import cloudpayments_events
from server_stub.services.billing.providers.cloudpayments_adapter import CloudPaymentsAdapter
from server_stub.services.billing.providers.stripe_adapter import StripeAdapter
from tests.helpers.fake_channels import FakeWebhook, HttpHit

STRIPE_KEY = "sk_test_fake-key-do-not-log"
STRIPE_WEBHOOK_SECRET = "whsec_fake-signing-secret"
CP_PUBLIC_ID = "pk_fake_public_id"
CP_SECRET = "cp-api-secret-do-not-log"


def _checkout_args(
    invoice_id: str, amount_minor: int, default_currency: str, **kw: Any
) -> dict[str, Any]:
    values: dict[str, Any] = {
        "invoice_id": invoice_id,
        "subscription_id": "sub_1",
        "customer_email": "payer@example.com",
        "description": "TGFlow Pro, monthly",
        "amount_minor": amount_minor,
        "currency": default_currency,
        "success_url": "https://tgflow.example/paid",
        "cancel_url": "https://tgflow.example/canceled",
        "idempotency_key": f"checkout-{invoice_id}",
    }
    values.update(kw)
    return values


@dataclass
class StripeRig:
    fake: FakeStripe
    adapter: StripeAdapter
    sink: FakeWebhook
    url: str

    def checkout(self, invoice_id: str = "inv_1", amount_minor: int = 1990, **kw: Any) -> Any:
        kw.setdefault("success_url", "https://tgflow.example/paid?session={CHECKOUT_SESSION_ID}")
        return self.adapter.create_checkout(**_checkout_args(invoice_id, amount_minor, "USD", **kw))

    def delivered(self, event_type: str) -> list[HttpHit]:
        self.fake.flush_webhooks()
        with self.sink.lock:
            return [h for h in self.sink.hits if h.json().get("type") == event_type]


@contextmanager
def stripe_rig(
    *, max_network_retries: int = 0, clock: FakeClock | None = None
) -> Iterator[StripeRig]:
    with FakeWebhook() as sink:
        fake = FakeStripe(
            api_key=STRIPE_KEY,
            webhook_url=f"{sink.base_url}/webhooks/stripe",
            webhook_secret=STRIPE_WEBHOOK_SECRET,
            clock=clock,
        )
        with serving(fake) as url:
            adapter = StripeAdapter(
                STRIPE_KEY, api_base=url, max_network_retries=max_network_retries
            )
            yield StripeRig(fake, adapter, sink, url)


@dataclass
class CloudPaymentsRig:
    fake: FakeCloudPayments
    adapter: CloudPaymentsAdapter
    sink: FakeWebhook
    url: str

    def checkout(self, invoice_id: str = "inv_1", amount_minor: int = 199050, **kw: Any) -> Any:
        return self.adapter.create_checkout(**_checkout_args(invoice_id, amount_minor, "RUB", **kw))

    def pay(self, order_id: str, check_code: int = 0) -> dict[str, Any]:
        """The customer pays on the order page; our Check answer is ``check_code``."""
        self.sink.queue(200, {"code": check_code})
        transaction = self.fake.pay_order(order_id)
        self.fake.flush_webhooks()
        return transaction

    def notifications(self, kind: str) -> list[dict[str, Any]]:
        """The delivered notifications of ``kind``, as the webhook side hands them over."""
        self.fake.flush_webhooks()
        with self.sink.lock:
            hits = [
                h for h in self.sink.hits if h.path == f"/webhooks/cloudpayments/{kind.lower()}"
            ]
        return [as_notification(kind, h.body) for h in hits]


def as_notification(kind: str, body: bytes) -> dict[str, Any]:
    fields: dict[str, Any] = dict(parse_qsl(body.decode(), keep_blank_values=True))
    fields[cloudpayments_events.NOTIFICATION_TYPE] = kind
    return fields


@contextmanager
def cloudpayments_rig(
    *, notify_json: bool = False, clock: FakeClock | None = None
) -> Iterator[CloudPaymentsRig]:
    with FakeWebhook() as sink:
        fake = FakeCloudPayments(
            public_id=CP_PUBLIC_ID,
            api_secret=CP_SECRET,
            notify_url=f"{sink.base_url}/webhooks/cloudpayments/{{type}}",
            notify_json=notify_json,
            clock=clock,
        )
        with serving(fake) as url:
            adapter = CloudPaymentsAdapter(CP_PUBLIC_ID, CP_SECRET, api_base=url)
            try:
                yield CloudPaymentsRig(fake, adapter, sink, url)
            finally:
                adapter.close()


# --- payloads in the providers' own shapes -------------------------------------------------------


def stripe_event(
    event_type: str, obj: dict[str, Any], *, created: int = 1767225600
) -> dict[str, Any]:
    """An Event as Stripe posts it (https://docs.stripe.com/api/events/object)."""
    return {
        "id": "evt_1QzJd2LkdIwHu7ixZ4ZtE3aF",
        "object": "event",
        "api_version": "2026-10-28.endive",
        "created": created,
        "data": {"object": obj},
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": event_type,
    }


def stripe_payment_intent(**overrides: Any) -> dict[str, Any]:
    intent: dict[str, Any] = {
        "id": "pi_3MtwBwLkdIwHu7ix28a3tqPa",
        "object": "payment_intent",
        "amount": 2000,
        "amount_received": 2000,
        "currency": "usd",
        "customer": "cus_NffrFeUfNV2Hib",
        "payment_method": "pm_1MtwBwLkdIwHu7ixV9Nq5fMm",
        "status": "succeeded",
        "latest_charge": "ch_3MtwBwLkdIwHu7ix28a3tqPa",
        "last_payment_error": None,
        "metadata": {"invoice_id": "inv_9", "subscription_id": "sub_9"},
        "created": 1767225500,
        "livemode": False,
    }
    intent.update(overrides)
    return intent


def cp_pay_fields(**overrides: Any) -> dict[str, Any]:
    """A Pay notification as CloudPayments posts it, form-decoded (every value a string)."""
    fields: dict[str, Any] = {
        "TransactionId": "1504",
        "Amount": "10.50",
        "Currency": "RUB",
        "PaymentAmount": "10.50",
        "PaymentCurrency": "RUB",
        "OperationType": "Payment",
        "InvoiceId": "inv_9",
        "AccountId": "sub_9",
        "SubscriptionId": "",
        "Name": "CARDHOLDER NAME",
        "Email": "payer@example.com",
        "DateTime": "2026-01-15 12:00:00",
        "IpAddress": "123.123.123.123",
        "CardFirstSix": "411111",
        "CardLastFour": "1111",
        "CardType": "Visa",
        "CardExpDate": "11/27",
        "Issuer": "Sberbank of Russia",
        "IssuerBankCountry": "RU",
        "Description": "TGFlow Pro",
        "TestMode": "1",
        "Status": "Completed",
        "Token": "477BBA133C182267FE5F086924ABDC5DB71F77BFC27F01F2843F2CDC69D89F05",
        "Data": '{"tgflow": "charge"}',
        "GatewayName": "Tinkoff",
        "TotalFee": "0.29",
        cloudpayments_events.NOTIFICATION_TYPE: "Pay",
    }
    fields.update(overrides)
    return fields
