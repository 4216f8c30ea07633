"""64 clients spend from four points wallets through two server worker processes on PostgreSQL:
spends, holds committed (in part) or released, each under an idempotency key and some sent again.
Meanwhile the wallets' owners buy points in the store (RuStore) and some purchases are refunded,
through the webhook inbox the servers' own workers apply. The ledger stays balanced (every
cached balance is the sum of its entries), nothing goes negative at any observation, every key
is applied once, every purchase credited once and every refund clawed back once."""

from __future__ import annotations

import random
import threading
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from server_stub.points_models import PointsHold, PointsTransaction
from server_stub.services.points.ledger import Kind
from server_stub.wiring import Services
from tests.helpers.api import assert_problem, bearer, register
from tests.helpers.contention import Api, Tally
from tests.helpers.points import assert_wallet_consistent
from tests.helpers.reliability_report import Report
from tests.helpers.reliability_server import (
    DEADLINE,
    Books,
    Served,
    Store,
    rustore,
    served,
    wait_for,
)
from tests.helpers.rustore import COINS

SEED = 20261201
WALLETS = 4
CLIENTS = 64
OPS_PER_CLIENT = 5
GRANT = 300
MAX_AMOUNT = 25
#: Store purchases of 100 points by each wallet's owner during the run; the first is refunded.
PURCHASES = 3
#: The most a wallet can ever hold.
CEILING = GRANT + PURCHASES * (COINS.points or 0)
OPS = ("spend", "replay_spend", "hold_commit", "hold_release", "replay_hold")

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


@dataclass
class Wallet:
    user_id: str
    token: str
    spent: int = 0
    committed: int = 0
    #: Idempotency keys the server accepted: spends and holds.
    spend_keys: list[str] = field(default_factory=list)
    hold_keys: list[str] = field(default_factory=list)
    #: The owner's store purchases (RuStore invoices).
    invoices: list[str] = field(default_factory=list)


def client_plan(index: int) -> list[tuple[str, int, int]]:
    """(operation, amount, used of a hold): seeded, independent of what the server answers."""
    rng = random.Random(SEED * 100 + index)
    plan = []
    for _ in range(OPS_PER_CLIENT):
        amount = rng.randint(1, MAX_AMOUNT)
        plan.append((rng.choice(OPS), amount, rng.randint(0, amount)))
    return plan


def refused(api: Api, r: httpx.Response) -> bool:
    if r.status_code != 409:
        return False
    assert_problem(r, 409, "insufficient_points")
    with api.tally.lock:
        api.tally.refused += 1
    return True


def spend(api: Api, wallet: Wallet, key: str, amount: int, replay: bool) -> None:
    body = {"amount": amount, "idempotency_key": key}
    r = api.call("POST", "/points/spend", body, 200, 409)
    if refused(api, r):
        return
    first = r.json()
    assert not first["replayed"] and first["entry"]["kind"] == "spend", first
    with api.tally.lock:
        wallet.spent += amount
        wallet.spend_keys.append(key)
    if replay:
        again = api.call("POST", "/points/spend", body, 200).json()
        assert again["replayed"] and again["entry"] == first["entry"], (again, first)
        other = {**body, "amount": amount + 1}
        conflict = api.call("POST", "/points/spend", other, 409)
        assert_problem(conflict, 409, "idempotency_conflict")
        with api.tally.lock:
            api.tally.replays += 1


def hold(api: Api, wallet: Wallet, key: str, op: str, amount: int, used: int) -> None:
    body = {"amount": amount, "idempotency_key": key}
    r = api.call("POST", "/points/holds", body, 201, 409)
    if refused(api, r):
        return
    held = r.json()
    assert (held["amount"], held["state"], held["replayed"]) == (amount, "held", False), held
    with api.tally.lock:
        wallet.hold_keys.append(key)
    if op == "replay_hold":
        again = api.call("POST", "/points/holds", body, 201).json()
        assert again["replayed"] and again["id"] == held["id"], (again, held)
        conflict = api.call("POST", "/points/holds", {**body, "amount": amount + 1}, 409)
        assert_problem(conflict, 409, "idempotency_conflict")
        with api.tally.lock:
            api.tally.replays += 1
    base = f"/points/holds/{held['id']}"
    if op == "hold_release":
        for replayed in (False, True):
            out = api.call("POST", f"{base}/release", None, 200).json()
            assert (out["state"], out["replayed"]) == ("released", replayed), out
        return
    for replayed in (False, True):
        out = api.call("POST", f"{base}/commit", {"used": used}, 200).json()
        assert (out["state"], out["used"], out["replayed"]) == ("committed", used, replayed), out
    with api.tally.lock:
        wallet.committed += used


def client_ops(api: Api, wallet: Wallet, index: int) -> None:
    for n, (op, amount, used) in enumerate(client_plan(index)):
        key = f"points-{index:02d}-{n}"
        if op in ("spend", "replay_spend"):
            spend(api, wallet, key, amount, op == "replay_spend")
        else:
            hold(api, wallet, key, op, amount, used)


def sell(world: Served, store: Store, wallets: list[Wallet]) -> dict[str, bool]:
    """Each wallet's owner buys points in the store; the first purchase of each is refunded
    once its notifications are in. Returns invoice → refunded."""
    invoices: dict[str, bool] = {}
    with httpx.Client(base_url=world.base, timeout=DEADLINE) as http:
        for n in range(PURCHASES):
            for wallet in wallets:
                invoice, bodies = store.buy(wallet.user_id)
                store.post(http, bodies)
                wallet.invoices.append(invoice)
                invoices[invoice] = n == 0
        for invoice, refunded in invoices.items():
            if refunded:
                store.post(http, [store.refund(invoice)])
    return invoices


def run(world: Served, store: Store, wallets: list[Wallet]) -> tuple[Tally, int, dict[str, bool]]:
    """The clients, the store and an observer of every wallet; returns the tally, the
    observations and what the store sold."""
    tally = Tally()
    start = threading.Barrier(CLIENTS + 2)
    done = threading.Event()
    observed = [0]

    def client(index: int) -> None:
        wallet = wallets[index % WALLETS]
        api = Api(world.base, wallet.token, tally)
        try:
            start.wait(timeout=DEADLINE)
            client_ops(api, wallet, index)
        finally:
            api.close()

    def observe() -> None:
        apis = [Api(world.base, wallet.token, tally) for wallet in wallets]
        start.wait(timeout=DEADLINE)
        try:
            while True:
                finished = done.is_set()
                for api in apis:
                    seen = api.call("GET", "/points/balance", None, 200).json()
                    assert min(seen["balance"], seen["held"], seen["shortfall"]) >= 0, seen
                    assert seen["balance"] + seen["held"] <= CEILING, seen
                    observed[0] += 1
                if finished:
                    return
        finally:
            for api in apis:
                api.close()

    def shop() -> dict[str, bool]:
        start.wait(timeout=DEADLINE)
        return sell(world, store, wallets)

    with ThreadPoolExecutor(max_workers=CLIENTS + 2) as pool:
        observer = pool.submit(observe)
        sales = pool.submit(shop)
        clients = [pool.submit(client, i) for i in range(CLIENTS)]
        work: list[Future[Any]] = [*clients, sales]
        wait(work, timeout=DEADLINE * 3)
        # The servers' own webhook workers apply what the store sent.
        books = Books(world.services)
        wait_for("the store's notifications to be applied", lambda: not books.pending())
        done.set()
        wait([observer], timeout=DEADLINE)
    for future in [*clients, observer]:
        future.result(timeout=0)
    return tally, observed[0], sales.result(timeout=0)


def keys_applied(world: Served, user_id: str) -> tuple[Counter[str], Counter[str]]:
    """How often each idempotency key of ``user_id`` was booked: spends, holds."""
    with world.services.ctx.read() as session:
        spends = session.scalars(
            select(PointsTransaction.idempotency_key).where(
                PointsTransaction.user_id == user_id, PointsTransaction.kind == Kind.SPEND.value
            )
        ).all()
        holds = session.scalars(
            select(PointsHold.idempotency_key).where(PointsHold.user_id == user_id)
        ).all()
    return Counter(k for k in spends if k), Counter(holds)


def open_holds(world: Served) -> int:
    with world.services.ctx.read() as session:
        count = session.scalar(
            select(func.count()).select_from(PointsHold).where(PointsHold.state == "held")
        )
    return count or 0


def check_wallet(
    world: Served, wallet: Wallet, balance: dict[str, int], sold: dict[str, bool]
) -> int:
    """Every key booked once, every purchase credited once (and clawed back once if refunded:
    or, refunded before its credit, neither), the balance what the clients and the store did.
    Returns the wallet's clawbacks."""
    assert_wallet_consistent(world.services, wallet.user_id)
    spends, holds = keys_applied(world, wallet.user_id)
    assert spends == Counter(wallet.spend_keys), "a spend booked twice or lost"
    assert holds == Counter(wallet.hold_keys), "a hold made twice or lost"
    assert set(spends.values()) | set(holds.values()) <= {1}
    books = Books(world.services)
    credits, clawbacks = books.booked(Kind.PURCHASE), books.booked(Kind.REFUND)
    refs = {f"rustore:{invoice}": sold[invoice] for invoice in wallet.invoices}
    for ref, refunded in refs.items():
        assert (credits[ref], clawbacks[ref]) in ([(0, 0), (1, 1)] if refunded else [(1, 0)])
    kept = sum(credits[ref] - clawbacks[ref] for ref in refs) * (COINS.points or 0)
    net = GRANT + kept - wallet.spent - wallet.committed
    assert (balance["balance"] - balance["shortfall"], balance["held"]) == (net, 0), balance
    return sum(clawbacks[ref] for ref in refs)


def test_points_contention_on_two_worker_processes(tmp_path: Path, reliability: Report) -> None:
    def seed(services: Services) -> None:
        services.store.products.create("test", COINS)

    with (
        rustore() as store,
        served(tmp_path, seed, env=store.env()) as world,
        httpx.Client(base_url=world.base, timeout=DEADLINE) as http,
    ):
        wallets = []
        for _ in range(WALLETS):
            account = register(http)
            user_id = account["user"]["id"]
            world.services.points.credit(user_id, GRANT, kind=Kind.GRANT, actor="system")
            wallets.append(Wallet(user_id, account["token"]))
        tally, observations, sold = run(world, store, wallets)
        balances = [http.get("/points/balance", headers=bearer(w.token)).json() for w in wallets]
        clawed = [
            check_wallet(world, wallet, balance, sold)
            for wallet, balance in zip(wallets, balances, strict=True)
        ]
        assert open_holds(world) == 0
        statuses = Counter(e.status for e in Books(world.services).events())
        assert set(statuses) <= {"applied", "ignored"}, statuses

    assert not tally.server_errors, tally.server_errors[:5]
    # The demand exceeded the wallets, so some requests were refused; every kind got through.
    assert tally.refused > 0 and tally.replays > 0
    assert all(w.spend_keys and w.hold_keys for w in wallets)
    spent = sum(len(w.spend_keys) for w in wallets)
    held = sum(len(w.hold_keys) for w in wallets)
    refunds = sum(sold.values())
    reliability.record(
        "points wallet contention, 2 workers, PostgreSQL",
        tried=f"{CLIENTS} clients on {WALLETS} wallets of {GRANT} points, "
        f"{sum(tally.statuses.values())} requests: {spent} spends, {held} holds (committed in "
        f"part or released, each settled twice), {tally.replays} keys sent again with the same "
        f"and with another request, {tally.refused} refused for want of points; meanwhile "
        f"{len(sold)} store purchases of 100 points and {refunds} refunds through the "
        f"webhook inbox ({sum(clawed)} clawed back after their credit)",
        checked=f"balance ≥ 0 and balance + held ≤ grant + purchases at {observations} "
        "observations; each wallet = the sum of its ledger entries and of its lots, every "
        "transaction's legs sum to 0, balance − owed = grant + kept purchases − spends − "
        "commits, nothing held; each key booked exactly once, each purchase credited once, "
        "each refund clawed back once",
    )
