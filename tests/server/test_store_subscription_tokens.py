"""Store subscriptions' tokens kept whole, and a subscription's invoice notified: on SQLite and
PostgreSQL, through a fake RuStore (docs/points.md, "Store subscriptions: long tokens and
notifications")."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from server_stub import db
from server_stub.db import transaction
from server_stub.services.store.subscriptions import subscription_ref
from server_stub.store_models import StorePurchase
from tests.helpers.backend import BackendFactory
from tests.helpers.rustore import PRO, Store, rustore_store

LONG = "a1.B2_c3-" * 222 + "xy"  # 2,000 characters


@pytest.fixture
def store(make_backend: BackendFactory) -> Iterator[Store]:
    with rustore_store(make_backend) as world:
        yield world


def test_a_2000_character_token_is_kept_whole_and_activates_once(store: Store) -> None:
    assert len(LONG) == 2000
    buyer = store.account()
    store.fake.add_subscription(LONG, active=True)
    for _ in range(2):
        answer = store.verify_subscription(buyer["headers"], LONG)
        assert answer.status_code == 200, answer.text
    (row,) = store.purchases()
    assert row.invoice_id == LONG and row.ref == subscription_ref(LONG)
    (sub,) = store.subscriptions()
    assert sub.state == "active" and sub.payment_method_ref == row.ref
    assert store.plan(buyer) == PRO.plan


def test_tokens_alike_in_their_first_thousand_characters_are_two_subscriptions(
    store: Store,
) -> None:
    first, second = store.account(), store.account()
    for account, token in ((first, LONG + "1"), (second, LONG + "2")):
        store.fake.add_subscription(token, active=True)
        answer = store.verify_subscription(account["headers"], token)
        assert answer.status_code == 200, answer.text
    assert sorted(p.invoice_id[-1] for p in store.purchases()) == ["1", "2"]
    assert {s.user_id for s in store.subscriptions()} == {first["id"], second["id"]}


def test_a_purchase_recorded_under_a_cut_ref_moves_to_the_whole_token(store: Store) -> None:
    buyer = store.account()
    now = store.backend.clock.now()
    cut = ("rustore-sub:" + LONG)[:200]
    with transaction(store.backend.services.ctx.write) as session:
        session.add(
            StorePurchase(
                ref=cut,
                store="rustore",
                invoice_id=LONG[:150],
                user_id=buyer["id"],
                product_id=PRO.id,
                status="ACTIVE",
                status_rank=0,
                status_at=now,
                points=0,
                created_at=now,
                updated_at=now,
            )
        )
    store.fake.add_subscription(LONG, active=True)
    assert store.verify_subscription(buyer["headers"], LONG).status_code == 200
    (row,) = store.purchases()
    assert (row.ref, row.invoice_id) == (subscription_ref(LONG), LONG)


def test_a_subscriptions_invoice_applies_the_stores_state_without_the_reconciler(
    store: Store,
) -> None:
    buyer = store.account()
    store.fake.subscription_invoice(LONG, PRO.id, user_id=buyer["id"], active=True)
    paid = store.fake.sent[-1]
    assert store.post_notification(paid).status_code == 200
    store.drain()
    assert [s.state for s in store.subscriptions()] == [
        "active"
    ]  # never verified: the payload's user
    store.tick(600)
    store.fake.subscription_invoice(
        LONG, PRO.id, user_id=buyer["id"], active=False, status="REJECTED"
    )
    assert store.post_notification(store.fake.sent[-1]).status_code == 200
    store.drain()
    (sub,) = store.subscriptions()
    assert sub.state == "past_due"
    (row,) = store.purchases()
    assert row.status == "HOLD" and row.invoice_id == LONG


def test_an_older_invoice_notified_late_never_moves_the_state_back(store: Store) -> None:
    buyer = store.account()
    store.fake.subscription_invoice("tok-n", PRO.id, user_id=buyer["id"], active=True)
    early = store.fake.sent[-1]  # delivered last
    store.tick(600)
    store.fake.subscription_invoice("tok-n", PRO.id, user_id=buyer["id"], active=True)
    assert store.post_notification(store.fake.sent[-1]).status_code == 200
    store.drain()
    store.tick(600)
    store.fake.subscription_invoice(
        "tok-n", PRO.id, user_id=buyer["id"], active=False, status="REJECTED"
    )
    assert store.post_notification(store.fake.sent[-1]).status_code == 200
    store.drain()
    store.fake.add_subscription("tok-n", active=True)  # what a re-fetch would now say
    assert store.post_notification(early).status_code == 200
    store.drain()
    assert [s.state for s in store.subscriptions()] == ["past_due"]
    assert store.purchases()[0].status == "HOLD"


def _migrate(conn: sa.Connection, revision: str, *, down: bool = False) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", "server_stub:migrations")
    cfg.attributes["connection"] = conn
    (command.downgrade if down else command.upgrade)(cfg, revision)


def test_migration_0017_keys_whole_tokens_by_their_hash_and_back(database_url: str) -> None:
    engine = db.make_engine(database_url)
    at = datetime(2026, 1, 1, tzinfo=UTC)
    if engine.dialect.name == "sqlite":
        at = at.replace(tzinfo=None)
    row = {
        "store": "rustore",
        "product_id": "pro_monthly",
        "status": "ACTIVE",
        "status_rank": 0,
        "status_at": at,
        "points": 0,
        "created_at": at,
        "updated_at": at,
    }
    insert = sa.text(
        "INSERT INTO store_purchases (ref, invoice_id, store, product_id, status, status_rank,"
        " status_at, points, created_at, updated_at) VALUES (:ref, :invoice_id, :store,"
        " :product_id, :status, :status_rank, :status_at, :points, :created_at, :updated_at)"
    )
    cut = ("rustore-sub:" + LONG)[:200]
    refs = sa.text("SELECT ref, invoice_id FROM store_purchases ORDER BY ref")
    try:
        with engine.begin() as conn:
            _migrate(conn, "0016")
            conn.execute(insert, {**row, "ref": "rustore-sub:tok-w", "invoice_id": "tok-w"})
            conn.execute(insert, {**row, "ref": cut, "invoice_id": LONG[:150]})
            conn.execute(insert, {**row, "ref": "rustore:77", "invoice_id": "77"})
        with engine.begin() as conn:
            _migrate(conn, "0017")
            after = conn.execute(refs).all()
        assert sorted(after) == sorted(
            [(cut, LONG[:150]), ("rustore:77", "77"), (subscription_ref("tok-w"), "tok-w")]
        )
        with engine.begin() as conn:
            _migrate(conn, "0016", down=True)
            back = conn.execute(refs).all()
        assert sorted(back) == sorted(
            [(cut, LONG[:150]), ("rustore:77", "77"), ("rustore-sub:tok-w", "tok-w")]
        )
    finally:
        engine.dispose()
