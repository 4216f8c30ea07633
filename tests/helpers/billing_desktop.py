"""The desktop's "Plans and billing" tab in tests: a signed-in window on it, subscribing in it,
and paying on the fake provider's page as the browser would."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from pytestqt.qtbot import QtBot
from sqlalchemy import select

from agent.protocol import ProviderName, SubscriptionState
from app.core_billing import BillingSnapshot
from app.demo import DemoBackend, start_demo_backend
from app.ui.billing_panel import BillingPanel
from app.ui.main_window import MainWindow
from app.viewmodels.billing import BillingViewModel
from server_stub.clock import Clock
from server_stub.db import transaction
from server_stub.points_models import PointsTransaction
from tests.helpers.desktop import Desktop
from tests.helpers.windows import billing_window

#: The webhook worker's idle wait in these tests (the demo's is 1 s).
WORKER_POLL_S = 0.05
#: The tab's status poll in these tests (the program's is 3 s).
TAB_POLL_MS = 50

#: The window, its billing panel and view-model, and the checkouts it opened (in order).
Tab = tuple[MainWindow, BillingPanel, BillingViewModel, list[str]]


@contextmanager
def billing_backend(data_dir: Path, clock: Clock | None = None) -> Iterator[DemoBackend]:
    """The demo backend with its fake providers (no marketplace), applying webhooks quickly."""
    backend = start_demo_backend(
        data_dir,
        max_devices=3,
        marketplace=False,
        clock=clock,
        rate_limit_enabled=False,
        webhook_poll_seconds=WORKER_POLL_S,
    )
    try:
        yield backend
    finally:
        backend.stop()


def open_tab(qtbot: QtBot, desktop: Desktop, tmp_path: Path) -> Tab:
    """A signed-in window on its loaded billing tab; checkouts go to a list, not a browser."""
    opened: list[str] = []
    window = billing_window(qtbot, desktop, tmp_path, opened, poll_ms=TAB_POLL_MS)
    panel, model = window.billing_panel, window.billing
    assert panel is not None and model is not None
    return window, panel, model, opened


def state_is(
    state: SubscriptionState, plan: str | None = None
) -> Callable[[BillingSnapshot], bool]:
    """For ``check_params_cb``: the tab shows a subscription in ``state`` (on ``plan``)."""

    def check(snapshot: BillingSnapshot) -> bool:
        sub = snapshot.subscription
        return sub is not None and sub.state == state and (plan is None or sub.plan == plan)

    return check


def subscribe(qtbot: QtBot, window: MainWindow, provider: ProviderName, opened: list[str]) -> str:
    """Subscribe to "basic" with ``provider`` in the tab; returns the checkout URL the
    "browser" was given, once the tab shows the subscription waiting for its payment."""
    panel, model = window.billing_panel, window.billing
    assert panel is not None and model is not None
    panel.select_plan("basic")
    panel.provider.setCurrentIndex(panel.provider.findData(provider))
    with qtbot.wait_signal(
        model.changed, timeout=30_000, check_params_cb=state_is(SubscriptionState.INCOMPLETE)
    ):
        panel.subscribe_button.click()
    (url,) = opened
    page = httpx.get(url)
    assert page.status_code == 200 and "Pay" in page.text
    return url


def pay(url: str) -> None:
    """Press Pay on the fake provider's page (as the browser would post its form)."""
    paid = httpx.post(url, data={"outcome": "pay"})
    assert paid.status_code == 303


def store_credits(backend: DemoBackend) -> list[tuple[str, int, str | None]]:
    """Every store purchase the ledger credited: (user id, points, purchase ref)."""
    services = backend.services
    with transaction(services.ctx.read) as session:
        rows = session.execute(
            select(
                PointsTransaction.user_id, PointsTransaction.amount, PointsTransaction.external_ref
            ).where(PointsTransaction.kind == "purchase")
        ).all()
    return [(row[0], row[1], row[2]) for row in rows]
