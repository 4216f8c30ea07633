"""``kill -9`` of the webhook worker (``tgflow-server webhooks work``) mid-apply, with RuStore
notifications queued in the inbox; a new worker takes over once the dead one's lease ends, and
every webhook is applied exactly once: each purchase credited once, each refund clawed back once.

The test holds row locks to stop the worker where it matters. First kill: a purchase's credit
waits for its wallet inside its transaction (the purchase already recorded and confirmed at the
store, the points not yet). Second kill: a refund's clawback has committed and the worker waits
to mark the webhook applied, so that its successor applies it again (and must claw back nothing
more).
"""

from __future__ import annotations

import subprocess
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from server_stub.app import create_app
from server_stub.config import Settings
from server_stub.services.points.ledger import Kind
from server_stub.webhook_models import WEBHOOK_PENDING, WebhookEvent
from server_stub.wiring import Services, build_services
from tests.helpers.api import register
from tests.helpers.live_server import LiveServer
from tests.helpers.points import assert_wallet_consistent
from tests.helpers.reliability_report import Report
from tests.helpers.reliability_server import (
    Books,
    Store,
    blocking,
    kill,
    rustore,
    throwaway_database,
    wait_for,
)
from tests.helpers.rustore import COINS
from tests.helpers.server_process import server_command

USERS = 4
#: The wallet the test locks to stop the worker: the last user's.
LOCK_WALLET = "SELECT user_id FROM points_wallets WHERE user_id = %(u)s"
PURCHASES = 24
#: Every third purchase is refunded once it was credited.
REFUNDED = range(0, PURCHASES, 3)
START_POINTS = 10
#: The shortest lease the settings admit: how long a dead worker's webhook waits for the next.
LEASE_SECONDS = 5

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


@dataclass
class Inbox:
    services: Services
    http: httpx.Client
    url: str
    data_dir: Path
    env: dict[str, str]
    logs: Path

    @contextmanager
    def worker(self, name: str) -> Iterator[subprocess.Popen[bytes]]:
        log = self.logs / f"worker-{name}.log"
        with server_command(["webhooks", "work"], self.url, self.data_dir, log, self.env) as proc:
            yield proc

    @property
    def books(self) -> Books:
        return Books(self.services)

    def pending(self) -> int:
        return self.books.pending()

    def event(self, event_id: str) -> WebhookEvent:
        return next(e for e in self.books.events() if e.event_id == event_id)


@contextmanager
def inbox(tmp_path: Path, store: Store) -> Iterator[Inbox]:
    """A throwaway database whose inbox is fed over HTTP by an app with no worker of its own."""
    with throwaway_database() as url:
        data_dir = tmp_path / "data"
        settings = Settings(
            data_dir=data_dir,
            database_url=url,
            rate_limit_enabled=False,
            webhook_lease_seconds=LEASE_SECONDS,
            **store.settings(),
        )
        env = store.env(database_url=url, webhook_lease_seconds=LEASE_SECONDS)
        services = build_services(settings)
        try:
            services.store.products.create("test", COINS)
            app = create_app(settings, services=services, sweeper=False)
            with LiveServer(app) as server, httpx.Client(base_url=server.url) as http:
                yield Inbox(services, http, url, data_dir, env, tmp_path)
        finally:
            services.ctx.engine.dispose()


def in_apply(hub: Inbox) -> WebhookEvent:
    """The webhook being applied: the first claimed one not yet done (a batch is applied in
    order)."""
    events = hub.books.events()
    return next(e for e in events if e.status in WEBHOOK_PENDING and e.claimed_by)


def drain(hub: Inbox, name: str) -> None:
    """A new worker applies every webhook still pending (after the dead one's lease, if any)."""
    with hub.worker(name):
        wait_for("every webhook to be applied", lambda: hub.pending() == 0)


def test_a_webhook_worker_killed_mid_apply_applies_every_webhook_once(
    tmp_path: Path, reliability: Report
) -> None:
    with rustore() as store, inbox(tmp_path, store) as hub:
        users = [register(hub.http)["user"]["id"] for _ in range(USERS)]
        for user in users:
            hub.services.points.credit(user, START_POINTS, kind=Kind.GRANT, actor="system")
        bought = [store.buy(users[i % USERS]) for i in range(PURCHASES)]
        invoices = [invoice for invoice, _ in bought]
        paid = [body for _, bodies in bought for body in bodies]
        store.post(hub.http, paid)

        # First kill: the last user's first credit waits for its wallet (three users' first
        # purchases applied before it).
        with blocking(hub.url) as wallet:
            wallet.lock(LOCK_WALLET, {"u": users[-1]})
            with hub.worker("first") as proc:
                stuck = wait_for(
                    "the worker's credit to wait for the wallet",
                    lambda: [q for q in wallet.waiting_in(proc.pid) if "points_wallets" in q],
                )
                first = in_apply(hub)
                applied_before = len(paid) - hub.pending()
                kill(hub.url, proc.pid)
            wallet.release()
        assert stuck and applied_before == 6, applied_before
        assert hub.books.booked(Kind.PURCHASE)[f"rustore:{invoices[USERS - 1]}"] == 0
        drain(hub, "after-first")

        # Second kill: a refund's clawback committed, the webhook not yet marked applied.
        refunds = [store.refund(invoices[i]) for i in REFUNDED]
        victim_invoice = invoices[REFUNDED[1]]
        with blocking(hub.url) as wallet, blocking(hub.url) as row:
            wallet.lock(LOCK_WALLET, {"u": users[-1]})
            with hub.worker("second") as proc:
                event_ids = store.post(hub.http, refunds)
                wait_for(
                    "the worker's clawback to wait for the wallet",
                    lambda: [q for q in wallet.waiting_in(proc.pid) if "points_wallets" in q],
                )
                second = in_apply(hub)
                assert second.event_id == event_ids[1], (second.event_id, event_ids)
                assert row.lock(
                    "SELECT seq FROM webhook_inbox WHERE seq = %(s)s", {"s": second.seq}
                )
                wallet.release()
                wait_for(
                    "the worker to wait to mark the webhook applied",
                    lambda: [q for q in row.waiting_in(proc.pid) if "webhook_inbox" in q],
                )
                assert hub.books.booked(Kind.REFUND)[f"rustore:{victim_invoice}"] == 1
                kill(hub.url, proc.pid)
            row.release()
        assert hub.event(second.event_id).status in WEBHOOK_PENDING  # the successor applies it
        drain(hub, "after-second")

        events = hub.books.events()
        purchases = hub.books.booked(Kind.PURCHASE)
        clawbacks = hub.books.booked(Kind.REFUND)
        balances = [hub.services.points.balance(user) for user in users]
        for user in users:
            assert_wallet_consistent(hub.services, user)
        statuses = Counter(e.status for e in events)

    assert len(events) == len(paid) + len(refunds) == 2 * PURCHASES + len(REFUNDED)
    assert set(statuses) <= {"applied", "ignored"} and statuses["applied"] > 0, statuses
    attempts = {e.event_id: e.attempts for e in events}
    assert attempts[first.event_id] == attempts[second.event_id] == 2, attempts
    refs = [f"rustore:{invoice}" for invoice in invoices]
    assert purchases == Counter(refs), purchases
    assert clawbacks == Counter(refs[i] for i in REFUNDED), clawbacks
    for index, (user, balance) in enumerate(zip(users, balances, strict=True)):
        mine = range(index, PURCHASES, USERS)
        kept = sum(i not in REFUNDED for i in mine)
        expected = START_POINTS + kept * (COINS.points or 0)
        assert (balance.balance, balance.held, balance.shortfall) == (expected, 0, 0), user

    done = ", ".join(f"{count} {status}" for status, count in sorted(statuses.items()))
    reliability.record(
        "kill -9 of the webhook worker mid-apply, PostgreSQL",
        tried=f"{len(events)} RuStore notifications ({PURCHASES} purchases of {USERS} users, "
        f"{len(REFUNDED)} refunded after their credit) through the inbox; 2 kills of "
        "`tgflow-server webhooks work`, each followed by a new worker: one while a credit "
        "waited inside its transaction, one after a clawback committed but before its webhook "
        "was marked applied",
        checked=f"every webhook done ({done}), the two killed ones on their second "
        f"attempt; each purchase credited once and each refund clawed back once; every balance = "
        "grant + kept purchases, nothing held or owed, each wallet = the sum of its entries",
    )
