"""The "Plans & billing" tab against the demo backend with its fake payment providers (real
HTTP everywhere): a checkout opened in the "browser", paid on the fake's hosted page, and the tab
seeing it by itself; a plan change priced before it is confirmed; cancel and resume; a refusal
shown in the window's language; a declined renewal paid with "Pay now". The Points section: the
demo's granted points converted into messages (the License tab's quota following), too many
refused in the window's language, a plan that sells no messages saying why converting is off."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from PyQt6.QtWidgets import QTableWidget
from pytestqt.qtbot import QtBot

from agent.protocol import ProviderName, SubscriptionState
from app.demo import DemoBackend
from app.demo_billing import DEMO_POINTS, DEMO_TOPUP_RATE
from app.viewmodels.formatting import format_price
from server_stub.clock import FakeClock
from server_stub.services.billing.plans import PlanChanges
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


def _cells(table: QTableWidget, row: int) -> list[str]:
    return [table.item(row, column).text() for column in range(table.columnCount())]  # type: ignore[union-attr]


def test_granted_points_converted_into_messages(qtbot: QtBot, tab: Tab) -> None:
    window, panel, model, _opened = tab
    box = panel.points
    assert box.balance.text() == "500" and not box.aside.isVisible()
    assert box.history.rowCount() == 1 and _cells(box.history, 0)[:3] == ["granted", "+500", "500"]
    # The demo plan is not on offer: its rate is applied by the server.
    assert "not on offer" in box.rate.text() and box.convert_button.isEnabled()
    license_snapshot = window.license.snapshot
    assert license_snapshot is not None
    before = license_snapshot.limit

    # Convert 30 points: asked first, nothing spent until confirmed.
    box.spin.setValue(30)
    box.convert_button.click()
    assert box.confirm_box.isVisible() and "30 points" in box.confirm_text.text()
    assert box.balance.text() == "500"
    with (
        qtbot.wait_signal(model.converted, timeout=30_000) as converted,
        qtbot.wait_signal(window.license.changed, timeout=30_000) as licensed,
    ):
        box.confirm_button.click()
    assert converted.args == [30, 30 * DEMO_TOPUP_RATE]
    qtbot.wait_until(lambda: box.balance.text() == "470", timeout=30_000)
    assert _cells(box.history, 0)[:3] == ["converted into messages", "−30", "470"]
    assert box.done.isVisible() and "300 extra messages" in box.done.text()
    assert licensed.args[0].limit == before + 30 * DEMO_TOPUP_RATE

    # More points than the wallet holds (asked while a reload runs: it waits its turn):
    # refused, in the window's language; nothing spent.
    window.translator.set_language("ru")
    with qtbot.wait_signal(model.failed, timeout=30_000) as refused:
        assert model.refresh() and model.busy
        assert model.convert_points(DEMO_POINTS)
    assert refused.args[0] == "Сервер лицензий: недостаточно баллов"
    assert panel.error.isVisible() and panel.error.text() == refused.args[0]
    assert box.balance.text() == "470" and box.title() == "Баллы"
    assert _cells(box.history, 0)[0] == "обмен на сообщения"


def test_a_plan_that_sells_no_messages_says_why_converting_is_off(
    qtbot: QtBot, tab: Tab, demo_backend: DemoBackend
) -> None:
    window, panel, model, opened = tab
    box = panel.points
    # On "basic" (subscribed and paid), a plan on offer: its rate is known and shown.
    url = subscribe(qtbot, window, ProviderName.STRIPE, opened)
    with qtbot.wait_signal(
        model.changed, timeout=30_000, check_params_cb=state_is(SubscriptionState.ACTIVE)
    ):
        pay(url)
    qtbot.wait_until(lambda: model.snapshot is not None and model.snapshot.license_plan == "basic")
    box.spin.setValue(3)
    assert box.rate.text() == "= 30 extra messages this period (10 per point on plan basic)"

    # The operator stops selling messages on "basic": the tab says why converting is off.
    changes = PlanChanges(topup_messages_per_point=0)
    demo_backend.services.billing.plans.change("test", "basic", changes)
    with qtbot.wait_signal(model.changed, timeout=30_000):
        panel.refresh_button.click()
    assert box.rate.text() == (
        "Plan basic does not sell extra messages for points: converting is off"
    )
    assert not box.convert_button.isEnabled() and not box.spin.isEnabled()
