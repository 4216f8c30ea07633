"""Store subscriptions as billing subscriptions, on SQLite and PostgreSQL, through a fake
RuStore: a verify switches the plan on once per token, a hold lets it lapse after the window
and billing's grace, the reconciler keeps an active one alive, and billing's own acts refuse
a subscription the store manages (docs/points.md, "Store purchases (RuStore)")."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from sqlalchemy import select

from server_stub.billing_models import BillingSubscription, BillingTransition
from server_stub.db import transaction
from tests.helpers.api import assert_problem
from tests.helpers.backend import BackendFactory
from tests.helpers.billing import RecordingAdapter
from tests.helpers.rustore import PRO, Store, rustore_store

WINDOW = timedelta(hours=48)
GRACE = timedelta(days=3)


@pytest.fixture
def store(make_backend: BackendFactory) -> Iterator[Store]:
    with rustore_store(make_backend) as world:
        yield world


def store_subs(store: Store) -> list[BillingSubscription]:
    with transaction(store.backend.services.ctx.read) as session:
        rows = session.scalars(
            select(BillingSubscription).where(BillingSubscription.provider == "rustore")
        )
        return list(rows)


def hours(delta: timedelta) -> float:
    return delta.total_seconds()


def test_an_active_subscription_makes_the_product_plan_the_license(store: Store) -> None:
    buyer = store.account()
    assert store.plan(buyer) == "free"
    store.fake.add_subscription("tok-1", active=True)
    ok = store.verify_subscription(buyer["headers"], "tok-1")
    assert ok.status_code == 200, ok.text
    assert store.plan(buyer) == PRO.plan
    (sub,) = store_subs(store)
    now = store.backend.clock.now()
    assert sub.state == "active" and sub.next_charge_at is None
    assert sub.paid_through == now + WINDOW
    assert (sub.price_minor, sub.currency) == (PRO.price_minor, PRO.currency)
    with transaction(store.backend.services.ctx.read) as session:
        actors = session.scalars(
            select(BillingTransition.actor_kind + ":" + BillingTransition.actor_id).where(
                BillingTransition.subscription_id == sub.id
            )
        )
        assert set(actors) == {"provider:rustore"}
    status = store.backend.client.get("/subscriptions/status", headers=buyer["headers"])
    assert status.status_code == 200, status.text
    assert status.json()["subscription"]["provider"] == "rustore"


def test_a_second_verify_extends_the_one_subscription(store: Store) -> None:
    buyer = store.account()
    store.fake.add_subscription("tok-2", active=True)
    assert store.verify_subscription(buyer["headers"], "tok-2").status_code == 200
    first = store_subs(store)[0].paid_through
    store.tick(600)
    assert store.verify_subscription(buyer["headers"], "tok-2").status_code == 200
    (sub,) = store_subs(store)
    assert first is not None and sub.paid_through == first + timedelta(minutes=10)


def test_a_held_subscription_is_not_extended_and_lapses_after_grace(store: Store) -> None:
    buyer = store.account()
    store.fake.add_subscription("tok-3", active=True)
    assert store.verify_subscription(buyer["headers"], "tok-3").status_code == 200
    granted = store_subs(store)[0].paid_through
    store.tick(600)
    store.fake.add_subscription("tok-3", active=False)
    held = store.verify_subscription(buyer["headers"], "tok-3")
    assert held.status_code == 200 and held.json()["active"] is False
    (sub,) = store_subs(store)
    assert sub.state == "past_due" and sub.paid_through == granted
    assert granted is not None and sub.grace_ends_at == granted + GRACE
    ends = granted + GRACE - store.backend.clock.now()
    store.tick(hours(ends) - 1)
    assert store.plan(buyer) == PRO.plan
    store.tick(1)
    store.backend.services.billing.subscriptions.tick()
    assert store.plan(buyer) is None
    assert store_subs(store)[0].state == "unpaid"


def test_the_reconciler_extends_an_active_one_and_lets_a_held_one_lapse(store: Store) -> None:
    kept, dropped = store.account(), store.account()
    store.fake.add_subscription("tok-kept", active=True)
    store.fake.add_subscription("tok-dropped", active=True)
    assert store.verify_subscription(kept["headers"], "tok-kept").status_code == 200
    assert store.verify_subscription(dropped["headers"], "tok-dropped").status_code == 200
    store.fake.add_subscription("tok-dropped", active=False)
    reconciler = store.backend.services.store_reconciler
    assert reconciler.recheck_subscriptions(store.backend.clock.now()) == 2
    store.tick(hours(WINDOW) - 60)  # each round moves the window on while the store says active
    assert reconciler.recheck_subscriptions(store.backend.clock.now()) == 2
    store.tick(hours(GRACE) + 120)
    store.backend.services.billing.subscriptions.tick()
    assert store.plan(kept) == PRO.plan
    assert store.plan(dropped) is None
    states = {s.user_id: s.state for s in store_subs(store)}
    assert states == {kept["id"]: "active", dropped["id"]: "unpaid"}


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/subscriptions/cancel", {"when": "now"}),
        ("/subscriptions/pause", None),
        ("/subscriptions/resume", None),
        ("/subscriptions/change-plan", {"plan": "free", "when": "now"}),
        ("/subscriptions/renew", None),
    ],
)
def test_billing_acts_refuse_a_store_subscription(
    store: Store, path: str, body: dict[str, str] | None
) -> None:
    buyer = store.account()
    store.fake.add_subscription("tok-4", active=True)
    assert store.verify_subscription(buyer["headers"], "tok-4").status_code == 200
    answer = store.backend.client.post(path, headers=buyer["headers"], json=body)
    assert assert_problem(answer, 422, "validation_error")["reason"] == "store_managed"
    assert store_subs(store)[0].state == "active"


def test_another_accounts_token_is_refused_and_grants_nothing(store: Store) -> None:
    buyer, other = store.account(), store.account()
    store.fake.add_subscription("tok-5", active=True)
    assert store.verify_subscription(buyer["headers"], "tok-5").status_code == 200
    taken = store.verify_subscription(other["headers"], "tok-5")
    assert assert_problem(taken, 409, "idempotency_conflict")["reason"] == "purchase_other_account"
    assert store.plan(other) == "free"
    assert [s.user_id for s in store_subs(store)] == [buyer["id"]]


def test_concurrent_verifies_of_one_token_make_one_subscription(store: Store) -> None:
    buyer = store.account()
    store.fake.add_subscription("tok-6", active=True)
    start = threading.Barrier(6)

    def one_verify() -> int:
        start.wait()
        return int(store.verify_subscription(buyer["headers"], "tok-6").status_code)

    with ThreadPoolExecutor(6) as pool:
        codes = [f.result() for f in [pool.submit(one_verify) for _ in range(6)]]
    assert codes == [200] * 6
    (sub,) = store_subs(store)
    with transaction(store.backend.services.ctx.read) as session:
        created = session.scalars(
            select(BillingTransition).where(
                BillingTransition.subscription_id == sub.id,
                BillingTransition.from_state.is_(None),
            )
        )
        assert len(list(created)) == 1
    assert store.plan(buyer) == PRO.plan


def test_subscribing_through_billing_over_a_store_subscription_names_the_store(
    store: Store,
) -> None:
    store.backend.services.billing.add_adapter(RecordingAdapter())
    buyer = store.account()
    store.fake.add_subscription("tok-7", active=True)
    assert store.verify_subscription(buyer["headers"], "tok-7").status_code == 200
    answer = store.backend.client.post(
        "/subscriptions/create",
        headers=buyer["headers"],
        json={"plan": PRO.plan, "provider": "stripe"},
    )
    problem = assert_problem(answer, 422, "validation_error")
    assert (problem["reason"], problem["provider"]) == ("store_managed", "rustore")
    assert [s.state for s in store_subs(store)] == ["active"]
