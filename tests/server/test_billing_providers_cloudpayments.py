"""Billing's CloudPayments adapter against the fake CloudPayments (its HTTP API with Basic auth,
Content-HMAC-signed notifications), and CloudPayments' notification shapes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from server_stub.config import Settings
from server_stub.fake_providers.demo import demo_providers
from server_stub.services.billing.contract import (
    ChargeOutcome,
    EventKind,
    ProviderName,
    ProviderRefused,
    ProviderUnavailable,
)
from server_stub.services.billing.providers import build_adapters
from server_stub.services.billing.providers.cloudpayments_adapter import (
    CloudPaymentsAdapter,
    read_check,
)
from server_stub.services.billing.providers.cloudpayments_events import NOTIFICATION_TYPE
from server_stub.services.billing.signatures import (
    SignatureRejected,
    cloudpayments_hmac,
    verify_cloudpayments_hmac,
    verify_stripe_signature,
)
from tests.helpers.billing_fakes import (
    CP_PUBLIC_ID,
    CP_SECRET,
    CloudPaymentsRig,
    cloudpayments_rig,
    cp_pay_fields,
)
from tests.helpers.fake_channels import FakeWebhook


@pytest.fixture
def rig() -> Iterator[CloudPaymentsRig]:
    with cloudpayments_rig() as running:
        yield running


def _kept_token(rig: CloudPaymentsRig, invoice_id: str = "inv_1") -> str:
    rig.pay(rig.checkout(invoice_id).checkout_ref)
    event = rig.adapter.parse_event(rig.notifications("Pay")[-1])
    assert event is not None and event.payment_method_ref
    return event.payment_method_ref


def _charge(
    rig: CloudPaymentsRig, token: str, key: str, amount_minor: int = 50050
) -> ChargeOutcome:
    return rig.adapter.charge(
        invoice_id="inv_2",
        subscription_id="sub_1",
        payment_method_ref=token,
        amount_minor=amount_minor,
        currency="RUB",
        description="TGFlow Pro, renewal",
        idempotency_key=key,
    )


def test_an_order_is_paid_after_our_check_and_the_signed_pay_keeps_the_card(
    rig: CloudPaymentsRig,
) -> None:
    checkout = rig.checkout("inv_1", 199050)
    assert checkout.url == f"{rig.url}/d/{checkout.checkout_ref}"
    order = rig.fake.orders[checkout.checkout_ref]
    assert (order["Amount"], order["Currency"], order["InvoiceId"], order["AccountId"]) == (
        Decimal("1990.50"),
        "RUB",
        "inv_1",
        "sub_1",
    )
    rig.pay(checkout.checkout_ref)

    (check,) = rig.notifications("Check")
    assert read_check(check) == type(read_check(check))(
        invoice_id="inv_1",
        subscription_id="sub_1",
        amount_minor=199050,
        currency="RUB",
        transaction_id=check["TransactionId"],
    )
    with rig.sink.lock:
        pay_hit = next(h for h in rig.sink.hits if h.path.endswith("/pay"))
    assert pay_hit.headers["content-type"] == "application/x-www-form-urlencoded"
    verify_cloudpayments_hmac(pay_hit.headers["content-hmac"], pay_hit.body, [CP_SECRET])
    with pytest.raises(SignatureRejected):
        verify_cloudpayments_hmac(pay_hit.headers["content-hmac"], pay_hit.body, ["other"])

    (pay,) = rig.notifications("Pay")
    event = rig.adapter.parse_event(pay)
    assert event is not None and event.kind is EventKind.CHECKOUT_COMPLETED
    assert event.event_id == f"{pay['TransactionId']}:Pay"
    assert (event.invoice_id, event.subscription_id, event.amount_minor, event.currency) == (
        "inv_1",
        "sub_1",
        199050,
        "RUB",
    )
    assert event.payment_method_ref == pay["Token"] and event.payment_ref == pay["TransactionId"]


def test_the_order_page_pays_in_a_browser(rig: CloudPaymentsRig) -> None:
    checkout = rig.checkout("inv_page", 1000)
    rig.sink.queue(200, {"code": 0})
    with httpx.Client(follow_redirects=False) as browser:
        page = browser.get(checkout.url)
        assert "10.00 RUB" in page.text and "<button" in page.text
        paid = browser.post(checkout.url, data={"outcome": "pay"})
    assert paid.status_code == 303 and paid.headers["location"] == "https://tgflow.example/paid"
    assert [n["InvoiceId"] for n in rig.notifications("Pay")] == ["inv_page"]


def test_a_check_we_reject_declines_the_payment(rig: CloudPaymentsRig) -> None:
    checkout = rig.checkout("inv_rejected")
    transaction = rig.pay(checkout.checkout_ref, check_code=13)
    assert transaction["Status"] == "Declined"
    assert rig.notifications("Pay") == []
    (fail,) = rig.notifications("Fail")
    event = rig.adapter.parse_event(fail)
    assert event is not None and event.kind is EventKind.PAYMENT_FAILED


def test_a_trial_checkout_authorizes_a_card_check_and_charges_nothing(
    rig: CloudPaymentsRig,
) -> None:
    checkout = rig.checkout("inv_trial", 0)
    order = rig.fake.orders[checkout.checkout_ref]
    assert order["RequireConfirmation"] is True and order["Amount"] == Decimal("1.00")
    rig.pay(checkout.checkout_ref)
    (pay,) = rig.notifications("Pay")
    assert pay["Status"] == "Authorized"
    event = rig.adapter.parse_event(pay)
    assert event is not None and event.kind is EventKind.CHECKOUT_COMPLETED
    assert event.amount_minor == 0 and event.payment_ref is None and event.payment_method_ref


def test_a_token_is_charged_once_per_request_id(rig: CloudPaymentsRig) -> None:
    token = _kept_token(rig)
    first = _charge(rig, token, "renewal-1")
    assert first.succeeded and first.payment_ref and first.payment_ref.isdigit()
    assert _charge(rig, token, "renewal-1") == first
    charges = [t for t in rig.fake.transactions.values() if t["InvoiceId"] == "inv_2"]
    assert len(charges) == 1 and charges[0]["Amount"] == Decimal("500.50")
    (pay,) = [n for n in rig.notifications("Pay") if n["InvoiceId"] == "inv_2"]
    event = rig.adapter.parse_event(pay)
    assert event is not None and event.kind is EventKind.PAYMENT_SUCCEEDED
    assert event.payment_ref == first.payment_ref and event.amount_minor == 50050


@pytest.mark.parametrize(
    ("reason", "hard"), [(5051, False), (5091, False), (5043, True), (5005, True)]
)
def test_declines_are_soft_or_hard(rig: CloudPaymentsRig, reason: int, hard: bool) -> None:
    token = _kept_token(rig)
    rig.fake.decline_token(token, reason)
    outcome = _charge(rig, token, f"renewal-{reason}")
    assert (outcome.succeeded, outcome.decline_code, outcome.hard_decline) == (
        False,
        str(reason),
        hard,
    )
    (fail,) = rig.notifications("Fail")
    event = rig.adapter.parse_event(fail)
    assert event is not None and event.kind is EventKind.PAYMENT_FAILED
    assert (event.decline_code, event.hard_decline, event.payment_ref) == (
        str(reason),
        hard,
        outcome.payment_ref,
    )


def test_refunds_in_parts(rig: CloudPaymentsRig) -> None:
    token = _kept_token(rig)
    payment = _charge(rig, token, "renewal-r", amount_minor=100000)
    assert payment.payment_ref
    part = rig.adapter.refund(
        payment_ref=payment.payment_ref, amount_minor=25050, currency="RUB", idempotency_key="r1"
    )
    assert part.succeeded and part.amount_minor == 25050
    assert (
        rig.adapter.refund(
            payment_ref=payment.payment_ref,
            amount_minor=25050,
            currency="RUB",
            idempotency_key="r1",
        )
        == part
    )
    with pytest.raises(ProviderRefused):
        rig.adapter.refund(
            payment_ref=payment.payment_ref,
            amount_minor=74951,
            currency="RUB",
            idempotency_key="r2",
        )
    (refund,) = rig.notifications("Refund")
    assert "Currency" not in refund  # CloudPayments' Refund names none: the payment's
    event = rig.adapter.parse_event(refund)
    assert event is not None and event.kind is EventKind.REFUNDED
    assert (event.refund_ref, event.payment_ref, event.amount_minor) == (
        part.refund_ref,
        payment.payment_ref,
        25050,
    )


def test_payment_truth_has_the_ids_of_the_notifications(rig: CloudPaymentsRig) -> None:
    rig.fake.drop_notifications = True
    checkout = rig.checkout("inv_1")
    rig.fake.pay_order(checkout.checkout_ref)
    (pay,) = [f for k, f in rig.fake.sent if k == "Pay"]
    truth = rig.adapter.payment_truth("inv_1")
    assert [(e.kind, e.event_id) for e in truth] == [
        (EventKind.CHECKOUT_COMPLETED, f"{pay['TransactionId']}:Pay")
    ]
    assert truth[0].payment_method_ref == pay["Token"] and truth[0].amount_minor == 199050
    assert rig.adapter.payment_truth("inv_unknown") == []
    assert rig.adapter.undelivered_events(truth[0].occurred_at) == []


def test_a_5xx_is_unavailable_and_bad_credentials_are_refused(rig: CloudPaymentsRig) -> None:
    rig.fake.fail_next(1, status=502)
    with pytest.raises(ProviderUnavailable):
        rig.checkout()
    wrong = CloudPaymentsAdapter(CP_PUBLIC_ID, "wrong-secret", api_base=rig.url)
    with pytest.raises(ProviderRefused):
        wrong.payment_truth("inv_1")
    with pytest.raises(ProviderRefused):  # an unknown currency is refused before sending
        rig.checkout(currency="XYZ")
    assert rig.fake.orders == {}


def test_json_notifications_are_read_alike() -> None:
    with cloudpayments_rig(notify_json=True) as rig:
        rig.pay(rig.checkout("inv_json", 123456).checkout_ref)
        rig.fake.flush_webhooks()
        with rig.sink.lock:
            hit = next(h for h in rig.sink.hits if h.path.endswith("/pay"))
        assert hit.headers["content-type"] == "application/json"
        assert b'"Amount":1234.56' in hit.body  # a JSON number, as CloudPayments sends
        assert hit.headers["x-content-hmac"] == cloudpayments_hmac(CP_SECRET, hit.body)
        fields: dict[str, Any] = {**json.loads(hit.body), NOTIFICATION_TYPE: "Pay"}
        event = rig.adapter.parse_event(fields)
        assert event is not None and event.amount_minor == 123456


def test_parse_event_reads_cloudpayments_notification_shapes() -> None:
    adapter = CloudPaymentsAdapter(CP_PUBLIC_ID, CP_SECRET, api_base="http://127.0.0.1:9")
    paid = adapter.parse_event(cp_pay_fields())
    assert paid is not None and paid.kind is EventKind.PAYMENT_SUCCEEDED
    assert (paid.event_id, paid.payment_ref, paid.amount_minor) == ("1504:Pay", "1504", 1050)
    assert paid.occurred_at.isoformat() == "2026-01-15T12:00:00+00:00"
    first = adapter.parse_event(cp_pay_fields(Data='{"tgflow": "checkout"}'))
    assert first is not None and first.kind is EventKind.CHECKOUT_COMPLETED
    # JSON notifications parsed with floats still read exactly.
    assert adapter.parse_event(cp_pay_fields(Amount=10.1)).amount_minor == 1010  # type: ignore[union-attr]
    confirmed = adapter.parse_event(cp_pay_fields(**{NOTIFICATION_TYPE: "Confirm"}))
    assert confirmed is not None and confirmed.event_id == "1504:Confirm"
    assert adapter.parse_event(cp_pay_fields(Status="Authorized")) is None  # Confirm will say
    failed = adapter.parse_event(
        cp_pay_fields(**{NOTIFICATION_TYPE: "Fail"}, Reason="StolenCard", ReasonCode="5043")
    )
    assert failed is not None and (failed.decline_code, failed.hard_decline) == ("5043", True)
    assert adapter.parse_event(cp_pay_fields(**{NOTIFICATION_TYPE: "Cancel"})) is None
    recurrent = {
        NOTIFICATION_TYPE: "Recurrent",
        "Id": "sc_8cf8a9338fb8ebf7202b08d09c938",
        "AccountId": "sub_9",
        "Status": "Cancelled",
        "StartDate": "2026-01-01 00:00:00",
        "Amount": "10.50",
        "Currency": "RUB",
    }
    canceled = adapter.parse_event(recurrent)
    assert canceled is not None and canceled.kind is EventKind.AGREEMENT_CANCELED
    assert canceled.subscription_id == "sub_9"
    assert adapter.parse_event({**recurrent, "Status": "Active"}) is None
    with pytest.raises(ValueError):
        adapter.parse_event({k: v for k, v in cp_pay_fields().items() if k != NOTIFICATION_TYPE})
    with pytest.raises(ValueError):
        adapter.parse_event(cp_pay_fields(Amount="10.505"))
    with pytest.raises(ValueError):
        read_check(cp_pay_fields(Amount=""))


def test_the_demo_serves_both_fakes_and_aims_them_at_the_backend(tmp_path: Path) -> None:
    with FakeWebhook() as backend, demo_providers() as fakes:
        adapters = build_adapters(Settings(data_dir=tmp_path, **fakes.settings))
        assert set(adapters) == {ProviderName.STRIPE, ProviderName.CLOUDPAYMENTS}
        fakes.deliver_to(backend.base_url)
        checkout = adapters[ProviderName.CLOUDPAYMENTS].create_checkout(
            invoice_id="inv_demo",
            subscription_id="sub_demo",
            customer_email="demo@tgflow.example",
            description="Demo",
            amount_minor=1000,
            currency="RUB",
            success_url="https://tgflow.example/paid",
            cancel_url="https://tgflow.example/canceled",
            idempotency_key="demo-1",
        )
        backend.queue(200, {"code": 0})
        fakes.cloudpayments.pay_order(checkout.checkout_ref)
        fakes.cloudpayments.flush_webhooks()
        stripe_checkout = adapters[ProviderName.STRIPE].create_checkout(
            invoice_id="inv_demo_s",
            subscription_id="sub_demo",
            customer_email="demo@tgflow.example",
            description="Demo",
            amount_minor=1000,
            currency="USD",
            success_url="https://tgflow.example/paid",
            cancel_url="https://tgflow.example/canceled",
            idempotency_key="demo-2",
        )
        fakes.stripe.complete_checkout(stripe_checkout.checkout_ref)
        fakes.stripe.flush_webhooks()
        with backend.lock:
            paths = [h.path for h in backend.hits]
            stripe_hit = next(h for h in backend.hits if h.path == "/webhooks/stripe")
        assert paths[:2] == ["/webhooks/cloudpayments/check", "/webhooks/cloudpayments/pay"]
        verify_stripe_signature(
            stripe_hit.headers["stripe-signature"],
            stripe_hit.body,
            [fakes.stripe_webhook_secret],
            now=datetime.now(UTC),
        )
