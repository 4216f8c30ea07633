"""Store purchases through a fake RuStore and the real adapter, on SQLite and PostgreSQL: verify
and notification converge to one credit, refunds claw back, and notifications are decrypted,
deduplicated and never move a purchase back (docs/points.md, "Store purchases (RuStore)")."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import func, select

from server_stub.db import transaction
from server_stub.points_models import PointsTransaction
from server_stub.services.store.notifications import encrypt
from server_stub.store_models import StorePurchase
from tests.helpers.api import assert_problem
from tests.helpers.backend import BackendFactory
from tests.helpers.rustore import COINS, PRO, Store, rustore_store


@pytest.fixture
def store(make_backend: BackendFactory) -> Iterator[Store]:
    with rustore_store(make_backend) as world:
        yield world


def purchases_of(store: Store, kind: str) -> int:
    with transaction(store.backend.services.ctx.read) as session:
        return (
            session.scalar(
                select(func.count())
                .select_from(PointsTransaction)
                .where(PointsTransaction.kind == kind)
            )
            or 0
        )


def status_of(store: Store, invoice_id: str) -> str:
    with transaction(store.backend.services.ctx.read) as session:
        row = session.get(StorePurchase, f"rustore:{invoice_id}")
        assert row is not None
        return row.status


def verify(store: Store, headers: dict[str, str], invoice_id: str, product: str = COINS.id):
    body = {"provider": "rustore", "purchase_id": invoice_id, "product_id": product}
    return store.backend.client.post("/payments/verify", headers=headers, json=body)


def test_products_are_public_and_only_those_on_sale(store: Store) -> None:
    listed = store.backend.client.get("/products").json()["products"]
    assert [p["id"] for p in listed] == [COINS.id, PRO.id]
    assert listed[0] == {
        "id": "coins_100",
        "kind": "consumable",
        "title": "100 coins",
        "price_minor": 9900,
        "currency": "RUB",
        "points": 100,
        "plan": None,
    }


def test_a_verify_confirms_the_hold_credits_once_and_answers_after_commit(store: Store) -> None:
    buyer = store.account()
    invoice = store.fake.create_purchase(COINS.id, user_id=buyer["id"])
    store.fake.pay(invoice)
    first = verify(store, buyer["headers"], invoice)
    assert first.status_code == 200, first.text
    assert first.json()["status"] == "CONFIRMED" and first.json()["replayed"] is False
    assert first.json()["points"] == 100 and first.json()["balance"]["balance"] == 100
    assert store.fake.purchases[invoice]["invoiceStatus"] == "CONFIRMED"
    again = verify(store, buyer["headers"], invoice)
    assert again.json()["replayed"] is True and again.json()["balance"]["balance"] == 100
    bought = store.backend.client.post(
        "/points/buy",
        headers=buyer["headers"],
        json={"provider": "rustore", "purchase_id": invoice, "product_id": COINS.id},
    )
    assert bought.json()["replayed"] is True
    assert store.balance(buyer["id"]) == 100 and purchases_of(store, "purchase") == 1


def test_verify_before_the_notifications_converges_to_one_credit(store: Store) -> None:
    buyer = store.account()
    invoice = store.fake.create_purchase(COINS.id, user_id=buyer["id"])
    store.fake.pay(invoice)
    assert verify(store, buyer["headers"], invoice).status_code == 200
    for body in store.fake.sent:  # EXECUTED, PAID, CONFIRMED, delivered late
        assert store.post_notification(body).status_code == 200
    store.drain()
    assert store.balance(buyer["id"]) == 100 and purchases_of(store, "purchase") == 1
    assert status_of(store, invoice) == "CONFIRMED"


def test_the_notification_before_verify_credits_and_verify_replays(store: Store) -> None:
    buyer = store.account()
    invoice = store.fake.create_purchase(COINS.id, user_id=buyer["id"])
    store.fake.pay(invoice)
    for body in list(store.fake.sent):
        assert store.post_notification(body).json() == {"received": True, "duplicate": False}
    store.drain()
    # The worker re-fetched the purchase, confirmed the hold and credited its owner.
    assert store.fake.purchases[invoice]["invoiceStatus"] == "CONFIRMED"
    assert store.balance(buyer["id"]) == 100
    late = verify(store, buyer["headers"], invoice)
    assert late.json()["replayed"] is True and late.json()["balance"]["balance"] == 100
    assert purchases_of(store, "purchase") == 1


def test_refused_verifies_credit_nothing(store: Store) -> None:
    buyer, other = store.account(), store.account()
    invoice = store.fake.create_purchase(COINS.id, user_id=buyer["id"])
    unpaid = verify(store, buyer["headers"], invoice)  # at the store's checkout still
    assert unpaid.status_code == 202, unpaid.text
    assert unpaid.json()["pending"] is True and unpaid.json()["status"] == "CREATED"
    assert unpaid.json()["points"] == 0 and unpaid.json()["balance"]["balance"] == 0
    store.fake.pay(invoice)
    stolen = verify(store, other["headers"], invoice)
    assert assert_problem(stolen, 409, "idempotency_conflict")["reason"] == (
        "purchase_other_account"
    )
    wrong = verify(store, buyer["headers"], invoice, PRO.id)
    assert assert_problem(wrong, 422, "validation_error")["reason"] == "purchase_mismatch"
    body = {"provider": "rustore", "purchase_id": invoice, "product_id": COINS.id}
    order = store.backend.client.post(
        "/payments/verify", headers=buyer["headers"], json={**body, "order_id": "not-the-order"}
    )
    assert assert_problem(order, 422, "validation_error")["reason"] == "purchase_mismatch"
    unknown = verify(store, buyer["headers"], "424242")
    assert assert_problem(unknown, 422, "validation_error")["reason"] == "purchase_unknown"
    assert store.fake.purchases[invoice]["invoiceStatus"] == "PAID"  # never confirmed
    assert store.balance(buyer["id"]) == store.balance(other["id"]) == 0


def test_a_purchase_pending_then_cancelled_ends_as_a_refusal(store: Store) -> None:
    buyer = store.account()
    invoice = store.fake.create_purchase(COINS.id, user_id=buyer["id"])
    store.fake.set_status(invoice, "EXECUTED")
    pending = verify(store, buyer["headers"], invoice)
    assert pending.status_code == 202 and pending.json()["status"] == "EXECUTED"
    store.tick()
    store.fake.set_status(invoice, "CANCELLED")
    ended = verify(store, buyer["headers"], invoice)
    assert assert_problem(ended, 422, "validation_error")["reason"] == "purchase_not_paid"
    assert store.balance(buyer["id"]) == 0 and status_of(store, invoice) == "CANCELLED"


def test_a_refund_claws_back_once_and_records_what_is_owed(store: Store) -> None:
    buyer = store.account()
    invoice = store.fake.create_purchase(COINS.id, user_id=buyer["id"])
    store.fake.pay(invoice)
    assert verify(store, buyer["headers"], invoice).status_code == 200
    spend = {"amount": 30, "idempotency_key": "spend-0001"}
    assert store.backend.client.post("/points/spend", headers=buyer["headers"], json=spend)
    store.tick()
    refund = store.fake.set_status(invoice, "REFUNDED")
    assert store.post_notification(refund).json()["duplicate"] is False
    assert store.post_notification(refund).json()["duplicate"] is True
    store.drain()
    balance = store.backend.services.points.balance(buyer["id"])
    assert (balance.balance, balance.shortfall) == (0, 30)
    assert purchases_of(store, "refund") == 1 and status_of(store, invoice) == "REFUNDED"
    again = verify(store, buyer["headers"], invoice)
    assert assert_problem(again, 422, "validation_error")["reason"] == "purchase_not_paid"
    assert purchases_of(store, "refund") == 1


def test_a_released_hold_credits_nothing(store: Store) -> None:
    buyer = store.account()
    invoice = store.fake.create_purchase(COINS.id, user_id=buyer["id"])
    store.fake.set_status(invoice, "EXECUTED")
    store.tick()
    reversed_ = store.fake.set_status(invoice, "REVERSED")
    store.post_notification(reversed_)
    store.drain()
    assert status_of(store, invoice) == "REVERSED"
    assert store.balance(buyer["id"]) == 0 and purchases_of(store, "reversal") == 0


def test_notifications_that_do_not_decrypt_are_refused(store: Store) -> None:
    buyer = store.account()
    invoice = store.fake.create_purchase(COINS.id, user_id=buyer["id"])
    store.fake.pay(invoice)
    good = json.loads(store.fake.sent[-1])
    wrong_key = store.fake.envelope({"notification_type": "TEST_EVENT"}, key=bytes(32))
    assert_problem(store.post_notification(wrong_key), 401, "token_invalid")
    raw = bytearray(base64.b64decode(good["payload"]))
    raw[-1] ^= 1  # the tag
    tampered = {**good, "payload": base64.b64encode(bytes(raw)).decode()}
    assert_problem(store.post_notification(json.dumps(tampered).encode()), 401, "token_invalid")
    raw = bytearray(base64.b64decode(good["payload"]))
    raw[14] ^= 1  # the ciphertext
    tampered = {**good, "payload": base64.b64encode(bytes(raw)).decode()}
    assert_problem(store.post_notification(json.dumps(tampered).encode()), 401, "token_invalid")
    assert_problem(store.post_notification(b"not json"), 422, "validation_error")
    nonsense = {**good, "payload": encrypt(store.key, {"notification_type": "SOMETHING"})}
    assert_problem(store.post_notification(json.dumps(nonsense).encode()), 422, "validation_error")
    assert store.backend.services.webhooks.events(provider="rustore") == []
    assert store.balance(buyer["id"]) == 0


def test_a_replay_and_a_late_earlier_status_change_nothing(store: Store) -> None:
    buyer = store.account()
    invoice = store.fake.create_purchase(COINS.id, user_id=buyer["id"])
    executed = store.fake.set_status(invoice, "EXECUTED")
    store.tick()
    store.fake.set_status(invoice, "PAID")
    paid = store.fake.sent[-1]
    store.tick()
    assert store.post_notification(paid).status_code == 200
    store.drain()
    assert status_of(store, invoice) == "CONFIRMED" and store.balance(buyer["id"]) == 100
    # The same notification again: a duplicate by its id, never queued again.
    assert store.post_notification(paid).json()["duplicate"] is True
    # An earlier status arriving last (out of order), and an old payload under a new id.
    late = json.loads(executed)
    store.post_notification(executed)
    store.post_notification(json.dumps({**late, "id": "replayed-1"}).encode())
    store.drain()
    assert status_of(store, invoice) == "CONFIRMED"
    assert store.balance(buyer["id"]) == 100 and purchases_of(store, "purchase") == 1


def test_a_test_event_is_stored_and_ignored(store: Store) -> None:
    assert store.post_notification(store.fake.test_event()).status_code == 200
    store.drain()
    (event,) = store.backend.services.webhooks.events(provider="rustore")
    assert event.status == "ignored"


def test_a_subscription_is_verified_for_one_account(store: Store) -> None:
    buyer, other = store.account(), store.account()
    store.fake.add_subscription("sub-token-1", active=True)
    body = {"provider": "rustore", "subscription_token": "sub-token-1", "product_id": PRO.id}
    ok = store.backend.client.post("/subscriptions/verify", headers=buyer["headers"], json=body)
    assert ok.status_code == 200, ok.text
    assert ok.json() == {"product_id": PRO.id, "plan": "pro", "active": True}
    assert store.fake.acknowledged == {"sub-token-1"}
    taken = store.backend.client.post("/subscriptions/verify", headers=other["headers"], json=body)
    assert assert_problem(taken, 409, "idempotency_conflict")["reason"] == "purchase_other_account"


def test_an_unconfigured_store_refuses_everything(make_backend: BackendFactory) -> None:
    with rustore_store(make_backend, rustore_public_token=None, rustore_console_key=None) as store:
        buyer = store.account()
        invoice = store.fake.create_purchase(COINS.id, user_id=buyer["id"])
        store.fake.pay(invoice)
        assert_problem(verify(store, buyer["headers"], invoice), 403, "forbidden")
        assert_problem(store.post_notification(store.fake.sent[-1]), 403, "forbidden")
        assert store.balance(buyer["id"]) == 0


def test_the_reconciler_finishes_a_purchase_whose_notification_never_came(store: Store) -> None:
    buyer = store.account()
    invoice = store.fake.create_purchase(COINS.id, user_id=buyer["id"])
    store.fake.set_status(invoice, "EXECUTED")
    early = verify(store, buyer["headers"], invoice)  # known to us, not paid yet
    assert early.status_code == 202 and early.json()["pending"] is True
    store.tick()
    store.fake.set_status(invoice, "PAID", notify=False)  # the notification is lost
    reconciler = store.backend.services.store_reconciler
    assert reconciler.due() == 1
    assert status_of(store, invoice) == "CONFIRMED" and store.balance(buyer["id"]) == 100
    assert reconciler.due() is None  # not again before its interval


def test_the_fake_delivers_its_notifications_over_http(store: Store) -> None:
    store.fake.notify_url = store.backend.url + "/webhooks/rustore"
    buyer = store.account()
    invoice = store.fake.create_purchase(COINS.id, user_id=buyer["id"])
    store.fake.pay(invoice)
    store.fake.flush()
    store.drain()
    assert store.balance(buyer["id"]) == 100
    store.fake.flush()  # the CONFIRMED that the worker's confirmation caused
    store.drain()
    events = store.backend.services.webhooks.events(provider="rustore")
    # EXECUTED and PAID from the buyer, then CONFIRMED: three events, one credit.
    assert len(events) == 3 and {e.kind for e in events} == {"INVOICE_STATUS"}
    assert store.balance(buyer["id"]) == 100 and purchases_of(store, "purchase") == 1


def test_concurrent_verifies_and_the_worker_credit_once(store: Store) -> None:
    buyer = store.account()
    invoice = store.fake.create_purchase(COINS.id, user_id=buyer["id"])
    store.fake.pay(invoice)
    for body in list(store.fake.sent):
        store.post_notification(body)
    start = threading.Barrier(9)

    def one_verify() -> int:
        start.wait()
        return verify(store, buyer["headers"], invoice).status_code

    def the_worker() -> int:
        start.wait()
        return store.drain()

    with ThreadPoolExecutor(9) as pool:
        verifies = [pool.submit(one_verify) for _ in range(8)]
        worker = pool.submit(the_worker)
        codes = [f.result() for f in verifies]
        worker.result()
    store.drain()
    assert codes == [200] * 8
    assert store.balance(buyer["id"]) == 100 and purchases_of(store, "purchase") == 1
