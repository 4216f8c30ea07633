"""The "Plans & billing" tab against the demo backend with its fake payment providers (real
HTTP everywhere): a checkout opened in the "browser", paid on the fake's hosted page, and the tab
seeing it by itself; a plan change priced before it is confirmed; cancel and resume; a refusal
shown in the window's language; a declined renewal paid with "Pay now"."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot

from agent.protocol import ProviderName, SubscriptionState
from app.demo import DemoBackend
from app.viewmodels.formatting import format_price
from server_stub.clock import FakeClock
from tests.helpers.billing_desktop import (
    Tab,
    billing_backend,
    open_tab,
    pay,
    state_is,
    subscribe,
)
from tests.helpers.desktop import Desktop

MONTH_S = 31 * 24 * 3600


@pytest.fixture
def server_clock() -> FakeClock | None:
    """The server's clock: the real one unless a test gives a fake one (parametrize)."""
    return None


@pytest.fixture
def demo_backend(tmp_path: Path, server_clock: FakeClock | None) -> Iterator[DemoBackend]:
    with billing_backend(tmp_path / "server", server_clock) as backend:
        yield backend


@pytest.fixture
def tab(qtbot: QtBot, desktop: Desktop, tmp_path: Path) -> Tab:
    return open_tab(qtbot, desktop, tmp_path)


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


@pytest.mark.parametrize("server_clock", [FakeClock(datetime.now(UTC))])
def test_a_declined_renewal_is_paid_now_at_a_checkout(
    qtbot: QtBot, tab: Tab, desktop: Desktop, demo_backend: DemoBackend, server_clock: FakeClock
) -> None:
    """A month later the kept card is declined; "Pay now" pays at a checkout. The server, its
    fake providers and the desktop share clocks the test moves."""
    window, panel, model, opened = tab
    fakes = demo_backend.payments
    assert fakes is not None
    url = subscribe(qtbot, window, ProviderName.STRIPE, opened)
    with qtbot.wait_signal(
        model.changed, timeout=30_000, check_params_cb=state_is(SubscriptionState.ACTIVE)
    ):
        pay(url)
    assert not panel.pay_now_button.isVisible()

    # A month later the kept card is declined: past due, with access until the grace ends.
    (card,) = fakes.stripe.of_type("payment_method")
    fakes.stripe.decline_card(card["id"], "insufficient_funds")
    server_clock.advance(MONTH_S)
    desktop.clock.advance(MONTH_S)
    demo_backend.services.billing.renew_due()
    desktop.sign_in()  # the month outlived the session
    with qtbot.wait_signal(
        model.changed, timeout=30_000, check_params_cb=state_is(SubscriptionState.PAST_DUE)
    ):
        panel.refresh_button.click()
    assert panel.values["state"].text() == "Payment overdue"
    assert "access stays until" in panel.note.text()
    assert panel.pay_now_button.isVisible() and panel.pay_now_button.isEnabled()

    # Pay now: the card is declined again, so the renewal's checkout opens in the "browser".
    with qtbot.wait_signal(model.checkout_opened, timeout=30_000) as checkout:
        panel.pay_now_button.click()
    renewal = checkout.args[0]
    assert opened == [url, renewal] and renewal != url
    # Paid a minute later (the clocks stand still otherwise, and Stripe's event times are whole
    # seconds: paid in the same instant, the payment would look older than the decline).
    server_clock.advance(60)
    desktop.clock.advance(60)
    with qtbot.wait_signal(
        model.changed, timeout=30_000, check_params_cb=state_is(SubscriptionState.ACTIVE)
    ):
        pay(renewal)
    assert not panel.pay_now_button.isVisible() and not model.polling
    statuses = [panel.invoices.item(row, 2).text() for row in range(panel.invoices.rowCount())]  # type: ignore[union-attr]
    assert statuses == ["paid", "paid"]
