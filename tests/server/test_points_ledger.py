"""The points wallet's double-entry ledger on SQLite and PostgreSQL (docs/points.md):
credits and spends, earliest-expiring first, holds, store claw-backs with a shortfall, operator
adjustments, and the invariants under 64 concurrent requests."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from server_stub.errors import (
    DomainError,
    IdempotencyConflict,
    InsufficientPoints,
    NotFound,
    ReservationConflict,
    ReservationExpired,
    ValidationFailed,
)
from server_stub.services.points.ledger import Kind
from tests.helpers.points import PointsWorld, points_world


@pytest.fixture
def world(database_url: str, tmp_path: Path) -> Iterator[PointsWorld]:
    with points_world(database_url, tmp_path / "data") as w:
        yield w


def test_a_spend_is_booked_once_per_key_and_replays_its_outcome(world: PointsWorld) -> None:
    user = world.new_user()
    world.grant(user, 100)
    first = world.points.spend(user, 30, idempotency_key="gen-1", reason="one picture")
    again = world.points.spend(user, 30, idempotency_key="gen-1", reason="one picture")
    assert (first.replayed, again.replayed) == (False, True)
    assert first.entry == again.entry and first.entry is not None
    assert first.entry.amount == -30 and first.entry.balance_after == 70
    assert world.points.balance(user).balance == 70
    with pytest.raises(IdempotencyConflict):
        world.points.spend(user, 31, idempotency_key="gen-1", reason="one picture")
    world.assert_consistent(user)


def test_a_spend_the_wallet_cannot_pay_books_nothing(world: PointsWorld) -> None:
    user = world.new_user()
    world.grant(user, 10)
    with pytest.raises(InsufficientPoints) as refused:
        world.points.spend(user, 11, idempotency_key="too-much")
    assert refused.value.extra == {"balance": 10}
    # The key was not used up by the refusal: the same key can pay once there is enough.
    world.grant(user, 5)
    assert world.points.spend(user, 11, idempotency_key="too-much").replayed is False
    assert world.points.balance(user).balance == 4
    world.assert_consistent(user)


@pytest.mark.parametrize("amount", [0, -1, 10**12 + 1])
def test_amounts_out_of_bounds_are_refused(world: PointsWorld, amount: int) -> None:
    user = world.new_user()
    with pytest.raises(ValidationFailed):
        world.points.spend(user, amount, idempotency_key="k-1")
    with pytest.raises(ValidationFailed):
        world.points.credit(user, amount, kind=Kind.GRANT, actor="system")


def test_the_earliest_expiring_points_go_first_and_the_rest_expire(world: PointsWorld) -> None:
    user = world.new_user()
    world.grant(user, 10, days=5)
    world.grant(user, 10, days=2)
    world.grant(user, 10)  # never expires: spent last
    world.points.spend(user, 15, idempotency_key="s-1")  # the 2-day lot, then 5 of the 5-day
    world.days(3)
    assert world.points.expire() == (0, 0)  # the 2-day lot is already empty
    world.days(3)
    assert world.points.expire() == (0, 5)  # what is left of the 5-day lot
    assert world.points.balance(user).balance == 10
    assert world.points.expire() == (0, 0)  # nothing twice
    world.assert_consistent(user)


def test_a_credit_cannot_expire_in_the_past(world: PointsWorld) -> None:
    user = world.new_user()
    with pytest.raises(ValidationFailed):
        world.grant(user, 10, days=0)


def test_a_hold_commits_part_and_returns_the_rest(world: PointsWorld) -> None:
    user = world.new_user()
    world.grant(user, 50)
    hold = world.points.hold(user, 20, idempotency_key="job-1")
    assert (hold.state, hold.balance.balance, hold.balance.held) == ("held", 30, 20)
    assert world.points.hold(user, 20, idempotency_key="job-1").id == hold.id  # replay
    with pytest.raises(IdempotencyConflict):
        world.points.hold(user, 21, idempotency_key="job-1")
    done = world.points.commit_hold(user, hold.id, used=12)
    assert (done.state, done.used, done.balance.balance, done.balance.held) == (
        "committed",
        12,
        38,
        0,
    )
    assert world.points.commit_hold(user, hold.id, used=12).replayed is True
    with pytest.raises(ReservationConflict):
        world.points.commit_hold(user, hold.id, used=5)
    with pytest.raises(ReservationConflict):
        world.points.release_hold(user, hold.id)
    world.assert_consistent(user)


def test_a_hold_released_or_expired_gives_everything_back(world: PointsWorld) -> None:
    user, other = world.new_user(), world.new_user()
    world.grant(user, 50)
    first = world.points.hold(user, 20, idempotency_key="job-1")
    with pytest.raises(NotFound):  # another user's hold does not exist for them
        world.points.release_hold(other, first.id)
    assert world.points.release_hold(user, first.id).balance.balance == 50
    assert world.points.release_hold(user, first.id).replayed is True
    second = world.points.hold(user, 40, idempotency_key="job-2")
    world.days(1)
    assert world.points.expire() == (1, 0)
    assert world.points.balance(user).balance == 50
    with pytest.raises(ReservationExpired):
        world.points.commit_hold(user, second.id)
    world.assert_consistent(user)


def test_a_refund_claws_back_what_it_can_and_the_rest_is_owed(world: PointsWorld) -> None:
    user = world.new_user()
    bought = world.points.credit(
        user, 100, kind=Kind.PURCHASE, actor="provider:rustore", external_ref="inv-1"
    )
    assert bought.entry is not None and bought.entry.amount == 100
    world.points.spend(user, 70, idempotency_key="s-1")
    back = world.points.claw_back(
        user, 100, kind=Kind.REFUND, external_ref="inv-1", actor="provider:rustore"
    )
    assert back.entry is not None and back.entry.amount == -30
    assert (back.balance.balance, back.balance.shortfall) == (0, 70)
    again = world.points.claw_back(
        user, 100, kind=Kind.REFUND, external_ref="inv-1", actor="provider:rustore"
    )
    assert again.replayed is True and again.balance.shortfall == 70
    world.assert_consistent(user)
    # Owed points block spending and are settled by the next credits first.
    world.grant(user, 50)
    assert world.points.balance(user) == type(back.balance)(0, 0, 20)
    with pytest.raises(InsufficientPoints) as refused:
        world.points.spend(user, 1, idempotency_key="s-2")
    assert refused.value.extra == {"shortfall": 20}
    world.grant(user, 40)
    assert world.points.balance(user) == type(back.balance)(20, 0, 0)
    world.assert_consistent(user)


def test_a_store_purchase_is_credited_once_and_to_one_account(world: PointsWorld) -> None:
    user, thief = world.new_user(), world.new_user()
    for _ in range(2):
        world.points.credit(
            user, 100, kind=Kind.PURCHASE, actor="provider:rustore", external_ref="inv-9"
        )
    assert world.points.balance(user).balance == 100
    with pytest.raises(IdempotencyConflict):
        world.points.credit(
            thief, 100, kind=Kind.PURCHASE, actor="provider:rustore", external_ref="inv-9"
        )
    assert world.points.balance(thief).balance == 0


def test_operator_adjustments_need_a_reason_and_never_go_below_zero(world: PointsWorld) -> None:
    user = world.new_user()
    with pytest.raises(ValidationFailed):
        world.points.adjust(user, 10, reason=" ", actor="staff:1", idempotency_key="a-1")
    up = world.points.adjust(user, 10, reason="goodwill", actor="staff:1", idempotency_key="a-1")
    assert up.entry is not None and up.entry.kind == "adjustment" and up.entry.amount == 10
    with pytest.raises(InsufficientPoints):
        world.points.adjust(user, -11, reason="typo", actor="staff:1", idempotency_key="a-2")
    down = world.points.adjust(user, -4, reason="typo", actor="staff:1", idempotency_key="a-3")
    assert down.entry is not None and down.entry.amount == -4 and down.balance.balance == 6
    world.assert_consistent(user)


def test_64_concurrent_spends_holds_and_refunds_keep_every_invariant(world: PointsWorld) -> None:
    user = world.new_user()
    world.grant(user, 600)
    world.points.credit(user, 200, kind=Kind.PURCHASE, actor="provider:x", external_ref="buy-1")
    start = threading.Barrier(64)
    outcomes: list[str] = []

    def work(i: int) -> str:
        start.wait()
        try:
            if i % 8 == 0:  # the same refund eight times: clawed back once
                world.points.claw_back(
                    user, 200, kind=Kind.REFUND, external_ref="buy-1", actor="provider:x"
                )
                return "refund"
            if i % 4 == 1:  # holds, half of them committed
                hold = world.points.hold(user, 25, idempotency_key=f"h-{i}")
                if i % 8 == 1:
                    world.points.commit_hold(user, hold.id, used=10)
                    return "hold-commit"
                world.points.release_hold(user, hold.id)
                return "hold-release"
            # spends, every key sent twice (i and i+1 share one)
            spent = world.points.spend(user, 30, idempotency_key=f"s-{i // 2}")
            return "replay" if spent.replayed else "spend"
        except InsufficientPoints:
            return "refused"
        except DomainError as exc:
            return type(exc).__name__

    with ThreadPoolExecutor(max_workers=64) as pool:
        outcomes = list(pool.map(work, range(64)))
    world.assert_consistent(user)
    balance = world.points.balance(user)
    spends = outcomes.count("spend")
    commits = outcomes.count("hold-commit")
    # Everything booked is accounted for: 800 in, the refund's 200 out (or owed), the rest spent.
    assert balance.held == 0
    assert balance.balance - balance.shortfall == 800 - 200 - 30 * spends - 10 * commits
    assert set(outcomes) <= {"refund", "hold-commit", "hold-release", "spend", "replay", "refused"}
    # Every spend key was applied at most once: a replay is the second request of a booked key.
    spend_keys = {i // 2 for i in range(64) if i % 8 != 0 and i % 4 != 1}
    assert spends <= len(spend_keys)
    assert outcomes.count("replay") <= spends
