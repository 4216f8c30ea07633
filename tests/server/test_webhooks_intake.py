"""``POST /webhooks/stripe`` and ``/webhooks/cloudpayments/{kind}`` on SQLite and PostgreSQL:
what is stored and acknowledged, and every refusal (nothing stored)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from server_stub.db import transaction
from server_stub.services.webhooks import CheckCode, NoChecker
from server_stub.webhook_models import WebhookEvent
from tests.helpers.api import assert_problem
from tests.helpers.webhooks import (
    CP_SECRET,
    STRIPE_NEXT_SECRET,
    STRIPE_SECRET,
    InboxApp,
    cp_form,
    cp_headers,
    inbox_app,
    stripe_event,
    stripe_headers,
)


@pytest.fixture
def hub(database_url: str, tmp_path: Path) -> Iterator[InboxApp]:
    with inbox_app(database_url, tmp_path / "data") as app:
        yield app


def stored(app: InboxApp) -> list[WebhookEvent]:
    with transaction(app.services.ctx.read) as session:
        return list(session.scalars(select(WebhookEvent).order_by(WebhookEvent.seq)))


def count(app: InboxApp) -> int:
    with transaction(app.services.ctx.read) as session:
        return int(session.scalar(select(func.count()).select_from(WebhookEvent)) or 0)


def post_stripe(app: InboxApp, body: bytes, headers: dict[str, str]) -> object:
    return app.client.post("/webhooks/stripe", content=body, headers=headers)


# --- Stripe ---------------------------------------------------------------------------------


def test_a_signed_stripe_event_is_stored_raw_and_queued(hub: InboxApp) -> None:
    body = stripe_event("evt_1", hub.now() - 5)
    r = hub.client.post("/webhooks/stripe", content=body, headers=stripe_headers(body, hub.now()))
    assert r.status_code == 200, r.text
    assert r.json() == {"received": True, "duplicate": False}
    [row] = stored(hub)
    assert (row.provider, row.event_id, row.kind, row.status) == (
        "stripe",
        "evt_1",
        "invoice.paid",
        "queued",
    )
    assert row.body == body  # byte for byte, as signed
    assert row.payload["id"] == "evt_1"
    assert row.event_at is not None and int(row.event_at.timestamp()) == hub.now() - 5
    assert row.received_at == hub.clock.now()
    assert row.headers["Stripe-Signature"].startswith("t=")
    assert hub.applier.calls == []  # acknowledged before anything is applied


def test_a_replayed_or_duplicate_stripe_event_is_acknowledged_and_queued_once(
    hub: InboxApp,
) -> None:
    body = stripe_event("evt_dup", hub.now())
    headers = stripe_headers(body, hub.now())
    first = hub.client.post("/webhooks/stripe", content=body, headers=headers)
    replay = hub.client.post("/webhooks/stripe", content=body, headers=headers)
    hub.clock.advance(60)
    # Stripe's own redelivery: the same event id, signed anew.
    again = hub.client.post(
        "/webhooks/stripe", content=body, headers=stripe_headers(body, hub.now())
    )
    assert first.json()["duplicate"] is False
    assert replay.status_code == again.status_code == 200
    assert replay.json()["duplicate"] is again.json()["duplicate"] is True
    assert count(hub) == 1
    assert hub.inbox.drain() == 1
    assert len(hub.applier.calls) == 1


@pytest.mark.parametrize("secret", [STRIPE_SECRET, STRIPE_NEXT_SECRET])
def test_either_secret_is_accepted_during_rotation(
    database_url: str, tmp_path: Path, secret: str
) -> None:
    both = f"{STRIPE_SECRET},{STRIPE_NEXT_SECRET}"
    with inbox_app(database_url, tmp_path / "data", stripe_webhook_secrets=both) as app:
        body = stripe_event("evt_rot", app.now())
        r = app.client.post(
            "/webhooks/stripe", content=body, headers=stripe_headers(body, app.now(), secret)
        )
        assert r.status_code == 200, r.text
        assert count(app) == 1


@pytest.mark.parametrize(
    ("case", "offset"),
    [("stale", -301), ("future", 301)],
)
def test_a_stripe_timestamp_outside_300_s_is_refused(hub: InboxApp, case: str, offset: int) -> None:
    body = stripe_event("evt_t", hub.now())
    r = hub.client.post(
        "/webhooks/stripe", content=body, headers=stripe_headers(body, hub.now() + offset)
    )
    assert "tolerance" in assert_problem(r, 401, "token_invalid")["detail"], case
    assert count(hub) == 0


def test_a_stripe_timestamp_at_the_edge_of_the_tolerance_is_accepted(hub: InboxApp) -> None:
    body = stripe_event("evt_edge", hub.now())
    r = hub.client.post(
        "/webhooks/stripe", content=body, headers=stripe_headers(body, hub.now() - 300)
    )
    assert r.status_code == 200, r.text


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "garbage",
        "t=abc,v1=00",
        "v1=" + "0" * 64,  # no timestamp
        "t=1768478400",  # no signature
        "t=1768478400,v1=" + "0" * 64,  # wrong signature
        "t=99999999999999999999,v1=00",
    ],
)
def test_a_missing_malformed_or_wrong_stripe_signature_is_refused(
    hub: InboxApp, header: str | None
) -> None:
    body = stripe_event("evt_bad", hub.now())
    headers = {"Content-Type": "application/json"}
    if header is not None:
        headers["Stripe-Signature"] = header
    assert_problem(
        hub.client.post("/webhooks/stripe", content=body, headers=headers), 401, "token_invalid"
    )
    assert count(hub) == 0


def test_a_stripe_body_changed_after_signing_is_refused(hub: InboxApp) -> None:
    body = stripe_event("evt_x", hub.now(), amount=100)
    headers = stripe_headers(body, hub.now())
    tampered = body.replace(b"100", b"999")
    r = hub.client.post("/webhooks/stripe", content=tampered, headers=headers)
    assert_problem(r, 401, "token_invalid")
    assert count(hub) == 0


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[1, 2]",
        b'{"type": "invoice.paid", "created": 1}',
        b'{"id": "", "type": "invoice.paid", "created": 1}',
        b'{"id": "evt", "type": "invoice.paid"}',
        b'{"id": "evt", "type": "invoice.paid", "created": true}',
        b'{"id": "evt", "type": "invoice.paid", "created": 1e400}',
        b'{"id": "evt", "created": 1}',
        b'{"id": "evt", "type": "t", "created": 1, "amount": NaN}',
        b'{"id": "evt", "type": "t", "created": 1, "amount": 1e999}',
        b'{"id": "evt\\u0000", "type": "t", "created": 1}',
        b'{"id": "evt", "type": "t", "created": 1, "name": "\\ud800"}',
        b"\xff\xfe",
    ],
)
def test_a_genuine_but_malformed_stripe_body_is_a_422(hub: InboxApp, body: bytes) -> None:
    r = hub.client.post("/webhooks/stripe", content=body, headers=stripe_headers(body, hub.now()))
    assert_problem(r, 422, "validation_error")
    assert count(hub) == 0


def test_stripe_webhooks_are_refused_when_no_secret_is_configured(
    database_url: str, tmp_path: Path
) -> None:
    with inbox_app(database_url, tmp_path / "data", stripe_webhook_secrets="") as app:
        body = stripe_event("evt_open", app.now())
        # Even a body signed with an empty key, or with what would be any secret, is refused.
        for secret in ("", STRIPE_SECRET):
            r = app.client.post(
                "/webhooks/stripe", content=body, headers=stripe_headers(body, app.now(), secret)
            )
            assert "no secret" in assert_problem(r, 403, "forbidden")["detail"]
        assert count(app) == 0


# --- CloudPayments --------------------------------------------------------------------------


@pytest.mark.parametrize("header", ["Content-HMAC", "X-Content-HMAC"])
def test_a_signed_cloudpayments_pay_is_stored_and_answered_code_0(
    hub: InboxApp, header: str
) -> None:
    body = cp_form(5001)
    r = hub.client.post(
        "/webhooks/cloudpayments/pay", content=body, headers=cp_headers(body, header=header)
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"code": 0}
    [row] = stored(hub)
    assert (row.provider, row.event_id, row.kind, row.status) == (
        "cloudpayments",
        "5001:pay",
        "pay",
        "queued",
    )
    assert row.payload["InvoiceId"] == "inv-1" and row.payload["NotificationKind"] == "pay"
    assert row.event_at is not None and row.event_at.isoformat() == "2026-01-15T11:59:00+00:00"
    assert row.body == body


def test_a_cloudpayments_json_body_is_read_too(hub: InboxApp) -> None:
    body = json.dumps({"TransactionId": 5002, "Amount": 990, "InvoiceId": "inv-2"}).encode()
    r = hub.client.post(
        "/webhooks/cloudpayments/refund",
        content=body,
        headers=cp_headers(body, content_type="application/json"),
    )
    assert r.json() == {"code": 0}
    assert [row.event_id for row in stored(hub)] == ["5002:refund"]


def test_the_same_transaction_is_one_event_per_kind(hub: InboxApp) -> None:
    body = cp_form(5003)
    for kind in ("pay", "pay", "confirm", "refund", "refund"):
        r = hub.client.post(
            f"/webhooks/cloudpayments/{kind}", content=body, headers=cp_headers(body)
        )
        assert r.json() == {"code": 0}
    assert sorted(row.event_id for row in stored(hub)) == [
        "5003:confirm",
        "5003:pay",
        "5003:refund",
    ]


def test_a_recurrent_notification_is_keyed_by_the_subscription_and_its_state(
    hub: InboxApp,
) -> None:
    def send(status: str, ok: int) -> None:
        body = cp_form(
            Id="sc_1", Status=status, SuccessfulTransactionsNumber=ok, FailedTransactionsNumber=0
        )
        r = hub.client.post(
            "/webhooks/cloudpayments/recurrent", content=body, headers=cp_headers(body)
        )
        assert r.json() == {"code": 0}

    send("Active", 1)
    send("Active", 1)  # a redelivery
    send("Active", 2)
    send("PastDue", 2)
    assert [row.event_id for row in stored(hub)] == [
        "sc_1:Active:1:0:recurrent",
        "sc_1:Active:2:0:recurrent",
        "sc_1:PastDue:2:0:recurrent",
    ]


@pytest.mark.parametrize(
    "code", [CheckCode.OK, CheckCode.UNKNOWN_ORDER, CheckCode.WRONG_AMOUNT, CheckCode.REJECTED]
)
def test_check_is_answered_by_the_invoice_checker(hub: InboxApp, code: CheckCode) -> None:
    hub.checker.code = code
    body = cp_form(6001, Amount="1.00")
    r = hub.client.post("/webhooks/cloudpayments/check", content=body, headers=cp_headers(body))
    assert r.json() == {"code": int(code)}
    assert hub.checker.seen[0]["Amount"] == "1.00"
    [row] = stored(hub)
    assert row.status == "ignored"  # a question answered, never queued
    assert hub.inbox.drain() == 0


def test_check_with_a_failing_checker_rejects_the_payment(hub: InboxApp) -> None:
    hub.checker.broken = True
    body = cp_form(6002)
    r = hub.client.post("/webhooks/cloudpayments/check", content=body, headers=cp_headers(body))
    assert r.json() == {"code": CheckCode.REJECTED}
    assert len(hub.checker.seen) == 1


def test_check_without_a_checker_answers_unknown_order() -> None:
    assert NoChecker().check({"InvoiceId": "inv-1"}) is CheckCode.UNKNOWN_ORDER


@pytest.mark.parametrize(
    "header",
    [None, "", "not base64!", "AAAA", "x" * 5000],
)
def test_a_missing_malformed_or_wrong_cloudpayments_hmac_is_refused(
    hub: InboxApp, header: str | None
) -> None:
    body = cp_form(7001)
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if header is not None:
        headers["Content-HMAC"] = header
    r = hub.client.post("/webhooks/cloudpayments/pay", content=body, headers=headers)
    assert_problem(r, 401, "token_invalid")
    assert count(hub) == 0


def test_a_cloudpayments_body_signed_with_another_secret_is_refused(hub: InboxApp) -> None:
    body = cp_form(7002)
    r = hub.client.post(
        "/webhooks/cloudpayments/pay", content=body, headers=cp_headers(body, secret="other" * 8)
    )
    assert_problem(r, 401, "token_invalid")
    assert count(hub) == 0


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"", "application/x-www-form-urlencoded"),
        (b"Amount=1", "application/x-www-form-urlencoded"),  # no TransactionId
        (b"TransactionId=12a", "application/x-www-form-urlencoded"),
        (b"TransactionId=1&TransactionId=2", "application/x-www-form-urlencoded"),
        (b"\xff=\xfe", "application/x-www-form-urlencoded"),
        (b"TransactionId", "application/x-www-form-urlencoded"),
        (b"TransactionId=1&Name=a%00b", "application/x-www-form-urlencoded"),
        (b"{", "application/json"),
        (b'{"TransactionId": -1}', "application/json"),
        (b'{"TransactionId": true}', "application/json"),
        (b"[]", "application/json"),
    ],
)
def test_a_genuine_but_malformed_cloudpayments_body_is_a_422(
    hub: InboxApp, body: bytes, content_type: str
) -> None:
    r = hub.client.post(
        "/webhooks/cloudpayments/pay",
        content=body,
        headers=cp_headers(body, content_type=content_type),
    )
    assert_problem(r, 422, "validation_error")
    assert count(hub) == 0


def test_an_unknown_cloudpayments_kind_is_a_422(hub: InboxApp) -> None:
    body = cp_form(7003)
    r = hub.client.post("/webhooks/cloudpayments/payout", content=body, headers=cp_headers(body))
    assert_problem(r, 422, "validation_error")
    assert count(hub) == 0


@pytest.mark.parametrize("kind", ["pay", "check"])
def test_cloudpayments_webhooks_are_refused_when_no_secret_is_configured(
    database_url: str, tmp_path: Path, kind: str
) -> None:
    with inbox_app(database_url, tmp_path / "data", cloudpayments_api_secret=None) as app:
        body = cp_form(7004)
        for secret in ("", CP_SECRET):
            r = app.client.post(
                f"/webhooks/cloudpayments/{kind}", content=body, headers=cp_headers(body, secret)
            )
            assert_problem(r, 403, "forbidden")
        assert count(app) == 0
        assert app.checker.seen == []


def test_the_metrics_count_received_duplicates_and_refusals(hub: InboxApp) -> None:
    body = stripe_event("evt_m", hub.now())
    for _ in range(2):
        hub.client.post("/webhooks/stripe", content=body, headers=stripe_headers(body, hub.now()))
    hub.client.post("/webhooks/stripe", content=body, headers={"Stripe-Signature": "t=1,v1=00"})
    text = hub.client.get("/metrics").text
    assert 'tgflow_webhooks_received_total{provider="stripe"} 1.0' in text
    assert 'tgflow_webhooks_duplicates_total{provider="stripe"} 1.0' in text
    assert 'tgflow_webhooks_rejected_total{provider="stripe",reason="signature"} 1.0' in text
    assert STRIPE_SECRET not in text
