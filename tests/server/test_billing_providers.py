"""Billing's provider adapters: Stripe through the real ``stripe`` SDK against the fake Stripe,
exact amounts, hard and soft declines, and which providers the settings offer.
(CloudPayments: test_billing_providers_cloudpayments.py.)"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from server_stub.clock import FakeClock
from server_stub.config import Settings
from server_stub.services.billing.contract import (
    ChargeOutcome,
    EventKind,
    ProviderName,
    ProviderRefused,
    ProviderUnavailable,
)
from server_stub.services.billing.providers import build_adapters
from server_stub.services.billing.providers.amounts import (
    InexactAmount,
    UnsupportedCurrency,
    major_to_minor,
    minor_to_major,
)
from server_stub.services.billing.providers.cloudpayments_adapter import json_body
from server_stub.services.billing.providers.stripe_adapter import StripeAdapter
from server_stub.services.billing.signatures import SignatureRejected, verify_stripe_signature
from tests.helpers.billing_fakes import (
    STRIPE_KEY,
    STRIPE_WEBHOOK_SECRET,
    StripeRig,
    stripe_event,
    stripe_payment_intent,
    stripe_rig,
)


@pytest.fixture
def rig() -> Iterator[StripeRig]:
    with stripe_rig() as running:
        yield running


def _kept_card(rig: StripeRig, invoice_id: str = "inv_1", amount_minor: int = 1990) -> str:
    checkout = rig.checkout(invoice_id, amount_minor)
    rig.fake.complete_checkout(checkout.checkout_ref)
    (hit,) = rig.delivered("checkout.session.completed")[-1:]
    event = rig.adapter.parse_event(hit.json())
    assert event is not None and event.payment_method_ref
    return event.payment_method_ref


def _charge(
    rig: StripeRig, card: str, key: str, amount_minor: int = 990, invoice_id: str = "inv_2"
) -> ChargeOutcome:
    return rig.adapter.charge(
        invoice_id=invoice_id,
        subscription_id="sub_1",
        payment_method_ref=card,
        amount_minor=amount_minor,
        currency="USD",
        description="TGFlow Pro, renewal",
        idempotency_key=key,
    )


# --- checkout -------------------------------------------------------------------------------------


def test_checkout_pays_on_the_hosted_page_and_the_signed_webhook_keeps_the_card(
    rig: StripeRig,
) -> None:
    checkout = rig.checkout("inv_1", 1990)
    assert checkout.url == f"{rig.url}/c/pay/{checkout.checkout_ref}"
    assert checkout.checkout_ref.startswith("cs_test_")
    session = rig.fake.session(checkout.checkout_ref)
    assert session is not None
    assert session["mode"] == "payment" and session["amount_total"] == 1990
    assert session["metadata"] == {"invoice_id": "inv_1", "subscription_id": "sub_1"}
    assert session["payment_intent_data"]["setup_future_usage"] == "off_session"

    with httpx.Client(follow_redirects=False) as browser:
        page = browser.get(checkout.url)
        assert page.status_code == 200 and "<button" in page.text and "19.90 USD" in page.text
        paid = browser.post(checkout.url, data={"outcome": "pay"})
    assert paid.status_code == 303
    assert (
        paid.headers["location"] == f"https://tgflow.example/paid?session={checkout.checkout_ref}"
    )

    (hit,) = rig.delivered("checkout.session.completed")
    stamp = verify_stripe_signature(
        hit.headers["stripe-signature"], hit.body, [STRIPE_WEBHOOK_SECRET], now=datetime.now(UTC)
    )
    assert stamp > 0
    with pytest.raises(SignatureRejected):
        verify_stripe_signature(
            hit.headers["stripe-signature"],
            hit.body + b" ",
            [STRIPE_WEBHOOK_SECRET],
            now=datetime.now(UTC),
        )
    # The webhook names the intent, not the card: the adapter fetches the session expanded.
    assert isinstance(hit.json()["data"]["object"]["payment_intent"], str)
    event = rig.adapter.parse_event(hit.json())
    assert event is not None
    assert event.kind is EventKind.CHECKOUT_COMPLETED
    assert (event.invoice_id, event.subscription_id) == ("inv_1", "sub_1")
    assert (event.amount_minor, event.currency) == (1990, "USD")
    payment_method, _, customer = (event.payment_method_ref or "").partition("|")
    assert payment_method.startswith("pm_") and customer.startswith("cus_")
    assert event.payment_ref is not None and event.payment_ref.startswith("pi_")

    (succeeded,) = rig.delivered("payment_intent.succeeded")
    paid_event = rig.adapter.parse_event(succeeded.json())
    assert paid_event is not None and paid_event.kind is EventKind.PAYMENT_SUCCEEDED
    assert paid_event.payment_ref == event.payment_ref


def test_a_trial_checkout_keeps_the_card_and_charges_nothing(rig: StripeRig) -> None:
    checkout = rig.checkout("inv_trial", 0)
    session = rig.fake.session(checkout.checkout_ref)
    assert session is not None and session["mode"] == "setup"
    rig.fake.complete_checkout(checkout.checkout_ref)
    (hit,) = rig.delivered("checkout.session.completed")
    event = rig.adapter.parse_event(hit.json())
    assert event is not None and event.kind is EventKind.CHECKOUT_COMPLETED
    assert event.amount_minor == 0 and event.payment_ref is None
    assert event.payment_method_ref and event.payment_method_ref.startswith("pm_")
    assert rig.fake.of_type("payment_intent") == []


def test_an_expired_checkout_is_read_as_expired(rig: StripeRig) -> None:
    checkout = rig.checkout("inv_gone")
    rig.fake.expire_checkout(checkout.checkout_ref)
    (hit,) = rig.delivered("checkout.session.expired")
    event = rig.adapter.parse_event(hit.json())
    assert event is not None and event.kind is EventKind.CHECKOUT_EXPIRED
    assert event.invoice_id == "inv_gone" and event.payment_method_ref is None


# --- charges --------------------------------------------------------------------------------------


def test_a_kept_card_is_charged_off_session(rig: StripeRig) -> None:
    card = _kept_card(rig)
    outcome = _charge(rig, card, "renewal-1")
    assert outcome.succeeded and outcome.payment_ref and outcome.payment_ref.startswith("pi_")
    intent = next(i for i in rig.fake.of_type("payment_intent") if i["id"] == outcome.payment_ref)
    assert (intent["amount"], intent["currency"]) == (990, "usd")
    assert intent["metadata"] == {"invoice_id": "inv_2", "subscription_id": "sub_1"}


@pytest.mark.parametrize(
    ("decline_code", "advice", "hard"),
    [
        ("insufficient_funds", None, False),
        ("generic_decline", None, False),
        ("stolen_card", None, True),
        ("do_not_honor", None, True),
        ("insufficient_funds", "do_not_try_again", True),
    ],
)
def test_declines_are_soft_or_hard(
    rig: StripeRig, decline_code: str, advice: str | None, hard: bool
) -> None:
    card = _kept_card(rig)
    rig.fake.decline_card(card.partition("|")[0], decline_code, advice)
    outcome = _charge(rig, card, "renewal-declined")
    assert not outcome.succeeded
    assert (outcome.decline_code, outcome.hard_decline) == (decline_code, hard)
    assert outcome.payment_ref and outcome.payment_ref.startswith("pi_")
    (hit,) = rig.delivered("payment_intent.payment_failed")
    event = rig.adapter.parse_event(hit.json())
    assert event is not None and event.kind is EventKind.PAYMENT_FAILED
    assert (event.decline_code, event.hard_decline, event.payment_ref) == (
        decline_code,
        hard,
        outcome.payment_ref,
    )


def test_a_retried_charge_charges_once(rig: StripeRig) -> None:
    card = _kept_card(rig)
    first = _charge(rig, card, "renewal-once")
    again = _charge(rig, card, "renewal-once")
    assert first == again
    assert (
        len(
            [
                i
                for i in rig.fake.of_type("payment_intent")
                if i["metadata"]["invoice_id"] == "inv_2"
            ]
        )
        == 1
    )
    with pytest.raises(ProviderRefused):  # the same key with other parameters: Stripe refuses
        _charge(rig, card, "renewal-once", amount_minor=991)


def test_the_sdk_retries_a_lost_answer_with_the_same_key() -> None:
    with stripe_rig(max_network_retries=1) as rig:
        card = _kept_card(rig)
        rig.fake.fail_next(1)
        outcome = _charge(rig, card, "renewal-flaky")
        assert outcome.succeeded
        assert (
            len(
                [
                    i
                    for i in rig.fake.of_type("payment_intent")
                    if i["metadata"]["invoice_id"] == "inv_2"
                ]
            )
            == 1
        )


def test_refunds_full_and_partial(rig: StripeRig) -> None:
    card = _kept_card(rig)
    payment = _charge(rig, card, "renewal-refund", amount_minor=1000)
    assert payment.payment_ref
    part = rig.adapter.refund(
        payment_ref=payment.payment_ref, amount_minor=300, currency="USD", idempotency_key="r1"
    )
    assert part.succeeded and part.amount_minor == 300 and part.refund_ref.startswith("re_")
    assert (
        rig.adapter.refund(
            payment_ref=payment.payment_ref, amount_minor=300, currency="USD", idempotency_key="r1"
        )
        == part
    )
    rest = rig.adapter.refund(
        payment_ref=payment.payment_ref, amount_minor=700, currency="USD", idempotency_key="r2"
    )
    assert rest.amount_minor == 700 and rest.refund_ref != part.refund_ref
    with pytest.raises(ProviderRefused):
        rig.adapter.refund(
            payment_ref=payment.payment_ref, amount_minor=1, currency="USD", idempotency_key="r3"
        )
    created = [rig.adapter.parse_event(h.json()) for h in rig.delivered("refund.created")]
    assert [(e.kind, e.refund_ref, e.amount_minor) for e in created if e] == [
        (EventKind.REFUNDED, part.refund_ref, 300),
        (EventKind.REFUNDED, rest.refund_ref, 700),
    ]


# --- truth ----------------------------------------------------------------------------------------


def test_payment_truth_tells_what_a_lost_webhook_left_out(rig: StripeRig) -> None:
    rig.fake.drop_webhooks = True
    card = _kept_card_without_webhook(rig)
    payment = _charge(rig, card, "renewal-truth", amount_minor=1000, invoice_id="inv_2")
    assert payment.payment_ref
    refund = rig.adapter.refund(
        payment_ref=payment.payment_ref, amount_minor=250, currency="USD", idempotency_key="rt"
    )

    first = rig.adapter.payment_truth("inv_1")
    assert [e.kind for e in first] == [
        EventKind.CHECKOUT_COMPLETED,
        EventKind.PAYMENT_SUCCEEDED,
    ] or [e.kind for e in first] == [EventKind.PAYMENT_SUCCEEDED, EventKind.CHECKOUT_COMPLETED]
    completed = next(e for e in first if e.kind is EventKind.CHECKOUT_COMPLETED)
    assert completed.payment_method_ref == card
    assert rig.adapter.payment_truth("inv_1") == first  # the same ids on every ask

    second = rig.adapter.payment_truth("inv_2")
    assert [(e.kind, e.amount_minor) for e in second] == [
        (EventKind.PAYMENT_SUCCEEDED, 1000),
        (EventKind.REFUNDED, 250),
    ]
    assert (
        second[1].refund_ref == refund.refund_ref and second[1].payment_ref == payment.payment_ref
    )
    assert rig.adapter.payment_truth("inv_unknown") == []
    assert rig.adapter.payment_truth("it's") == []  # quoted in the search query


def _kept_card_without_webhook(rig: StripeRig) -> str:
    checkout = rig.checkout("inv_1", 1990)
    session = rig.fake.complete_checkout(checkout.checkout_ref)
    intent = next(
        i for i in rig.fake.of_type("payment_intent") if i["id"] == session["payment_intent"]
    )
    return f"{intent['payment_method']}|{session['customer']}"


def test_undelivered_events_are_those_stripe_could_not_deliver() -> None:
    clock = FakeClock(datetime(2026, 3, 1, tzinfo=UTC))
    with stripe_rig(clock=clock) as rig:
        _kept_card(rig, "inv_delivered")
        assert rig.adapter.undelivered_events(datetime(2026, 1, 1, tzinfo=UTC)) == []
        clock.advance(3600)
        rig.fake.drop_webhooks = True
        rig.fake.complete_checkout(rig.checkout("inv_lost").checkout_ref)
        lost = rig.adapter.undelivered_events(datetime(2026, 3, 1, 0, 30, tzinfo=UTC))
        assert {e.kind for e in lost} == {EventKind.CHECKOUT_COMPLETED, EventKind.PAYMENT_SUCCEEDED}
        assert {e.invoice_id for e in lost} == {"inv_lost"}
        assert all(e.event_id.startswith("evt_") for e in lost)
        assert rig.adapter.undelivered_events(datetime(2026, 3, 1, 2, tzinfo=UTC)) == []


# --- failures -------------------------------------------------------------------------------------


def test_a_5xx_or_no_answer_is_unavailable_and_a_bad_key_is_refused(rig: StripeRig) -> None:
    rig.fake.fail_next(1, status=503)
    with pytest.raises(ProviderUnavailable):
        rig.checkout()
    wrong_key = StripeAdapter("sk_test_wrong", api_base=rig.url, max_network_retries=0)
    with pytest.raises(ProviderRefused):
        wrong_key.payment_truth("inv_1")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    with pytest.raises(ProviderUnavailable):
        StripeAdapter(STRIPE_KEY, api_base=closed, max_network_retries=0).payment_truth("inv_1")


def test_bad_requests_are_refused_before_anything_is_sent(rig: StripeRig) -> None:
    with pytest.raises(UnsupportedCurrency):
        rig.checkout(currency="XYZ")
    with pytest.raises(ProviderRefused):
        _charge(rig, "not-a-card", "k")
    assert rig.fake.of_type("customer") == []


# --- Stripe's payloads ----------------------------------------------------------------------------


def test_parse_event_reads_stripes_event_shapes() -> None:
    adapter = StripeAdapter(STRIPE_KEY, api_base="http://127.0.0.1:9", max_network_retries=0)
    succeeded = adapter.parse_event(
        stripe_event("payment_intent.succeeded", stripe_payment_intent())
    )
    assert succeeded is not None
    assert (succeeded.kind, succeeded.payment_ref, succeeded.amount_minor, succeeded.currency) == (
        EventKind.PAYMENT_SUCCEEDED,
        "pi_3MtwBwLkdIwHu7ix28a3tqPa",
        2000,
        "USD",
    )
    assert succeeded.occurred_at == datetime.fromtimestamp(1767225600, UTC)
    assert succeeded.event_id == "evt_1QzJd2LkdIwHu7ixZ4ZtE3aF"

    failed_intent = stripe_payment_intent(
        status="requires_payment_method",
        amount_received=0,
        last_payment_error={
            "type": "card_error",
            "code": "card_declined",
            "decline_code": "lost_card",
        },
    )
    failed = adapter.parse_event(stripe_event("payment_intent.payment_failed", failed_intent))
    assert failed is not None and (failed.decline_code, failed.hard_decline) == ("lost_card", True)

    refund = {
        "id": "re_1Nispe2eZvKYlo2Cd31jOCgZ",
        "object": "refund",
        "amount": 500,
        "currency": "usd",
        "payment_intent": "pi_3MtwBwLkdIwHu7ix28a3tqPa",
        "status": "succeeded",
        "metadata": {},
        "created": 1767225700,
    }
    refunded = adapter.parse_event(stripe_event("refund.created", refund))
    assert refunded is not None and (refunded.refund_ref, refunded.amount_minor) == (
        refund["id"],
        500,
    )
    assert (
        adapter.parse_event(stripe_event("refund.created", {**refund, "status": "pending"})) is None
    )

    charge = {
        "id": "ch_3MtwBwLkdIwHu7ix28a3tqPa",
        "object": "charge",
        "amount": 2000,
        "amount_refunded": 500,
        "payment_intent": "pi_3MtwBwLkdIwHu7ix28a3tqPa",
        "currency": "usd",
        "metadata": {"invoice_id": "inv_9"},
    }
    assert (
        adapter.parse_event(stripe_event("charge.refunded", charge)) is None
    )  # refund.created tells
    listed = {**charge, "refunds": {"object": "list", "data": [refund]}}
    old_style = adapter.parse_event(stripe_event("charge.refunded", listed))
    assert (
        old_style is not None
        and old_style.refund_ref == refund["id"]
        and old_style.invoice_id == "inv_9"
    )

    session = {
        "id": "cs_test_a1",
        "object": "checkout.session",
        "mode": "payment",
        "status": "complete",
        "payment_status": "paid",
        "amount_total": 2000,
        "currency": "usd",
        "customer": "cus_NffrFeUfNV2Hib",
        "metadata": {"invoice_id": "inv_9", "subscription_id": "sub_9"},
        "payment_intent": stripe_payment_intent(),
        "setup_intent": None,
    }
    completed = adapter.parse_event(
        stripe_event("checkout.session.completed", session)
    )  # expanded: no call
    assert completed is not None
    assert completed.payment_method_ref == "pm_1MtwBwLkdIwHu7ixV9Nq5fMm|cus_NffrFeUfNV2Hib"
    assert (
        adapter.parse_event(
            stripe_event("checkout.session.completed", {**session, "payment_status": "unpaid"})
        )
        is None
    )
    assert (
        adapter.parse_event(stripe_event("customer.created", {"id": "cus_1", "object": "customer"}))
        is None
    )
    with pytest.raises(ValueError):
        adapter.parse_event(
            {**stripe_event("payment_intent.succeeded", stripe_payment_intent()), "created": "x"}
        )


# --- amounts and settings -------------------------------------------------------------------------

CURRENCIES = st.sampled_from(["RUB", "USD", "EUR", "rub"])


@given(amount=st.integers(min_value=-(10**15), max_value=10**15), currency=CURRENCIES)
def test_minor_and_major_units_convert_exactly_both_ways(amount: int, currency: str) -> None:
    major = minor_to_major(amount, currency)
    assert major_to_minor(major, currency) == amount
    assert major_to_minor(str(major), currency) == amount
    # What goes on CloudPayments' wire reads back as the same number.
    assert json.loads(json_body({"Amount": major}), parse_float=Decimal)["Amount"] == major


@given(amount=st.integers(min_value=0, max_value=10**13))
def test_a_json_float_amount_is_read_by_its_decimal_text(amount: int) -> None:
    text = format(minor_to_major(amount, "RUB"), "f")
    assert major_to_minor(json.loads(text), "RUB") == amount


@pytest.mark.parametrize("value", ["10.505", "1e-3", "abc", "NaN", True, None, [1]])
def test_inexact_or_foreign_amounts_are_refused(value: object) -> None:
    with pytest.raises(InexactAmount):
        major_to_minor(value, "RUB")
    with pytest.raises(UnsupportedCurrency):
        minor_to_major(100, "JPX")


def test_only_configured_providers_are_built(tmp_path: Path) -> None:
    base: dict[str, Any] = {"data_dir": tmp_path}
    assert build_adapters(Settings(**base)) == {}
    only_public_id = Settings(**base, cloudpayments_public_id="pk_1")
    assert build_adapters(only_public_id) == {}
    settings = Settings(
        **base,
        stripe_api_key="sk_test_secret_value",
        cloudpayments_public_id="pk_1",
        cloudpayments_api_secret="cp_secret_value",
    )
    adapters = build_adapters(settings)
    assert set(adapters) == {ProviderName.STRIPE, ProviderName.CLOUDPAYMENTS}
    assert all(adapter.name is name for name, adapter in adapters.items())
    assert "sk_test_secret_value" not in repr(settings) and "cp_secret_value" not in repr(settings)
