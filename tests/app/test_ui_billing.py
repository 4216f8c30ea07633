"""The "Plans & billing" tab against the demo backend with its fake payment providers (real
HTTP everywhere): a checkout opened in the "browser", paid on the fake's hosted page, and the tab
seeing it by itself; a plan change priced before it is confirmed; cancel and resume; a refusal
shown in the window's language."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pytestqt.qtbot import QtBot

from agent.protocol import ProviderName, SubscriptionState
from app.core_billing import BillingSnapshot
from app.demo import DemoBackend, start_demo_backend
from app.ui.billing_panel import BillingPanel
from app.ui.main_window import MainWindow
from app.viewmodels.billing import BillingViewModel
from app.viewmodels.formatting import format_price
from tests.helpers.desktop import Desktop
from tests.helpers.windows import billing_window

#: The webhook worker's idle wait in these tests (the demo's is 1 s).
WORKER_POLL_S = 0.05
#: The tab's status poll in these tests (the program's is 3 s).
TAB_POLL_MS = 50


@pytest.fixture
def demo_backend(tmp_path: Path) -> Iterator[DemoBackend]:
    backend = start_demo_backend(
        tmp_path / "server",
        max_devices=3,
        marketplace=False,
        rate_limit_enabled=False,
        webhook_poll_seconds=WORKER_POLL_S,
    )
    try:
        yield backend
    finally:
        backend.stop()


Tab = tuple[MainWindow, BillingPanel, BillingViewModel, list[str]]


@pytest.fixture
def tab(qtbot: QtBot, desktop: Desktop, tmp_path: Path) -> Tab:
    """A signed-in window on its loaded billing tab, and the checkouts it opened."""
    opened: list[str] = []
    window = billing_window(qtbot, desktop, tmp_path, opened, poll_ms=TAB_POLL_MS)
    panel, model = window.billing_panel, window.billing
    assert panel is not None and model is not None
    return window, panel, model, opened


def state_is(state: SubscriptionState, plan: str | None = None) -> object:
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


def test_a_checkout_paid_in_the_browser_shows_by_itself(
    qtbot: QtBot, tab: Tab, demo_backend: DemoBackend
) -> None:
    window, panel, model, opened = tab
    assert demo_backend.payments is not None
    # The offer, with prices in minor units formatted for the window.
    shown = [panel.plans.item(row, 1).text() for row in range(panel.plans.rowCount())]  # type: ignore[union-attr]
    assert "9.90 USD a month" in shown and "299.00 USD a year" in shown
    assert panel.values["state"].text() == "No subscription"

    url = subscribe(qtbot, window, ProviderName.STRIPE, opened)
    assert url.startswith(demo_backend.payments.stripe.base_url + "/c/pay/")
    assert panel.values["state"].text() == "Waiting for the payment"
    assert model.polling and panel.waiting.isVisible()
    # Another tab in front: the billing tab does not ask meanwhile...
    window.tabs.setCurrentWidget(window.license_panel)
    with qtbot.assert_not_emitted(model.changed, wait=300):
        pay(url)
        demo_backend.payments.stripe.flush_webhooks()
    # ...and shown again it catches up, then sees the payment by itself.
    with qtbot.wait_signal(
        model.changed, timeout=30_000, check_params_cb=state_is(SubscriptionState.ACTIVE)
    ):
        window.tabs.setCurrentWidget(window.billing_tab)
    assert panel.values["state"].text() == "Active"
    assert panel.values["plan"].text() == "basic · 9.90 USD a month"
    assert not model.polling and not panel.waiting.isVisible()
    assert panel.invoices.rowCount() == 1
    cells = [panel.invoices.item(0, column).text() for column in range(6)]  # type: ignore[union-attr]
    assert cells[2:] == ["paid", "9.90 USD", "9.90 USD", "9.90 USD via Stripe, succeeded"]
    # The license followed the subscription.
    assert model.snapshot is not None and model.snapshot.license_plan == "basic"


def test_change_priced_first_then_cancel_resume_and_a_refusal(qtbot: QtBot, tab: Tab) -> None:
    window, panel, model, opened = tab
    url = subscribe(qtbot, window, ProviderName.CLOUDPAYMENTS, opened)
    # The tab in front sees the payment by itself.
    with qtbot.wait_signal(
        model.changed, timeout=30_000, check_params_cb=state_is(SubscriptionState.ACTIVE)
    ):
        pay(url)
    tr = window.translator

    # Change plan: the prorated amount is shown, and nothing has changed yet.
    panel.select_plan("pro")
    with qtbot.wait_signal(model.preview_ready, timeout=30_000) as priced:
        panel.change_button.click()
    preview = priced.args[0]
    assert preview.direction == "upgrade"
    assert preview.net_minor == preview.charge_minor - preview.credit_minor
    assert 1990 <= preview.net_minor <= 2000  # 29.90 - 9.90 for what is left of the month
    text = panel.preview_text.text()
    assert panel.preview_box.isVisible()
    assert f"You pay {format_price(preview.net_minor, 'USD', tr)} now" in text
    assert format_price(preview.credit_minor, "USD", tr) in text
    assert model.snapshot is not None and model.snapshot.subscription is not None
    assert model.snapshot.subscription.plan == "basic"
    with qtbot.wait_signal(
        model.changed, timeout=30_000, check_params_cb=state_is(SubscriptionState.ACTIVE, "pro")
    ):
        panel.confirm_button.click()
    assert not panel.preview_box.isVisible()
    assert panel.values["plan"].text() == "pro · 29.90 USD a month"
    assert panel.invoices.rowCount() == 2  # the proration's invoice, charged on the kept card

    # Cancel at the period's end (asked while a reload runs: it waits its turn), then resume.
    with qtbot.wait_signal(
        model.changed, timeout=30_000, check_params_cb=lambda s: s.subscription.cancel_at_period_end
    ):
        assert model.refresh() and model.busy
        assert model.cancel()
    assert "it will not renew" in panel.note.text()
    assert panel.resume_button.isEnabled() and not panel.cancel_button.isEnabled()
    with qtbot.wait_signal(model.changed, timeout=30_000) as resumed:
        panel.resume_button.click()
    assert not resumed.args[0].subscription.cancel_at_period_end
    assert "it will not renew" not in panel.note.text()

    # A refusal (a live subscription is not created twice), in the window's language.
    tr.set_language("ru")
    with qtbot.wait_signal(model.failed, timeout=30_000) as refused:
        model.subscribe("basic", ProviderName.STRIPE)
    assert refused.args[0] == "Сервер лицензий: такая запись уже есть"
    assert panel.error.isVisible() and panel.error.text() == refused.args[0]
    assert panel.values["state"].text() == "Активна"
