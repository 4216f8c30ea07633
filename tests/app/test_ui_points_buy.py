"""Buying points in the "Plans & billing" tab, end to end: the demo backend and its fake RuStore
(real HTTP everywhere). Buy opens the fake store's page in the "browser"; paying there (an HTTP
post, as the browser's form would) makes both the tab's verify and the store's notification reach
the server, and the balance rises exactly once. A cancelled purchase is refused in the window's
language; the tab asks only while it is on screen; an unreachable store is said so."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PyQt6.QtWidgets import QTableWidget
from pytestqt.qtbot import QtBot

from app.demo import DemoBackend
from app.demo_billing import DEMO_POINTS
from tests.helpers.billing_desktop import Tab, billing_backend, open_tab, store_credits
from tests.helpers.desktop import Desktop


@pytest.fixture
def demo_backend(tmp_path: Path) -> Iterator[DemoBackend]:
    with billing_backend(tmp_path / "server") as backend:
        yield backend


@pytest.fixture
def tab(qtbot: QtBot, desktop: Desktop, tmp_path: Path) -> Tab:
    return open_tab(qtbot, desktop, tmp_path)


def _cells(table: QTableWidget, row: int) -> list[str]:
    return [table.item(row, column).text() for column in range(table.columnCount())]  # type: ignore[union-attr]


def _buy(qtbot: QtBot, tab: Tab, index: int = 0) -> str:
    """Choose product ``index`` and press Buy; returns the store page the "browser" got."""
    _window, panel, model, opened = tab
    box = panel.points
    box.products.setCurrentIndex(index)
    with qtbot.wait_signal(model.purchase_changed, timeout=30_000) as started:
        if model.busy:  # the button waits (disabled); the view-model queues what it is asked
            assert model.buy_points(box.products.currentData())
        else:
            box.buy_button.click()
    assert started.args == [True] and model.purchase is not None
    url = opened[-1]
    assert url == model.purchase.checkout_url
    page = httpx.get(url)
    assert page.status_code == 200 and "Pay" in page.text and "CREATED" in page.text
    return url


def _press(url: str, outcome: str) -> None:
    """Press Pay or Cancel on the fake store's page (as the browser posts its form)."""
    answer = httpx.post(url, data={"outcome": outcome})
    assert answer.status_code == 303


def test_points_bought_in_the_store_are_credited_once(
    qtbot: QtBot, tab: Tab, demo_backend: DemoBackend
) -> None:
    window, panel, model, _opened = tab
    box = panel.points
    assert demo_backend.payments is not None and demo_backend.payments.rustore is not None
    store = demo_backend.payments.rustore
    # The points products, cheapest first, with their prices.
    shown = [box.products.itemText(i) for i in range(box.products.count())]
    assert shown == ["100 points — 99.00 RUB", "500 points — 399.00 RUB"]
    assert box.buy_button.isEnabled() and not box.buy_hint.isVisible()

    # Buy asked while a reload runs: it waits its turn, never dropped.
    assert model.refresh() and model.busy and not box.buy_button.isEnabled()
    url = _buy(qtbot, tab)
    assert box.buy_hint.isVisible() and "store's page" in box.buy_hint.text()
    assert not box.buy_button.isEnabled()
    # Not paid yet: the server says "pending" and the tab keeps asking.
    assert model.checking_purchase and box.balance.text() == str(DEMO_POINTS)

    with qtbot.wait_signal(model.points_bought, timeout=30_000) as bought:
        _press(url, "pay")
    assert bought.args == [100]
    qtbot.wait_until(lambda: box.balance.text() == str(DEMO_POINTS + 100), timeout=30_000)
    assert _cells(box.history, 0)[:3] == ["bought", "+100", str(DEMO_POINTS + 100)]
    assert box.done.isVisible() and box.done.text() == "Done: 100 points bought."
    assert model.purchase is None and not model.checking_purchase and not box.buy_hint.isVisible()

    # The store's notifications (EXECUTED, PAID, CONFIRMED) reached the server too, and its worker
    # applied them: one credit all the same.
    store.flush()
    inbox = demo_backend.services.webhooks
    inbox.drain()
    events = inbox.events(provider="rustore")
    assert len(events) >= 3 and all(e.status in ("applied", "ignored") for e in events)
    purchase_id = url.rsplit("/", 1)[1]
    (credit,) = store_credits(demo_backend)
    assert credit[1:] == (100, f"rustore:{purchase_id}")
    assert store.purchases[purchase_id]["invoiceStatus"] == "CONFIRMED"
    with qtbot.wait_signal(model.changed, timeout=30_000):
        panel.refresh_button.click()
    assert box.balance.text() == str(DEMO_POINTS + 100)
    kinds = [_cells(box.history, row)[0] for row in range(box.history.rowCount())]
    assert kinds.count("bought") == 1
    assert window.billing is model


def test_a_cancelled_purchase_is_refused_in_the_window_language(
    qtbot: QtBot, tab: Tab, demo_backend: DemoBackend
) -> None:
    window, panel, model, _opened = tab
    box = panel.points
    window.translator.set_language("ru")
    assert box.products.itemText(1) == "Баллы: 500 — 399,00 RUB"
    url = _buy(qtbot, tab, index=1)
    with (
        qtbot.wait_signal(model.failed, timeout=30_000) as refused,
        qtbot.wait_signal(model.purchase_changed, timeout=30_000) as ended,
    ):
        _press(url, "cancel")
    assert refused.args[0] == (
        "Магазин не принял оплату (покупка отменена, отклонена или просрочена): баллы не куплены."
    )
    assert ended.args == [False] and not model.checking_purchase
    assert panel.error.isVisible() and panel.error.text() == refused.args[0]
    assert box.balance.text() == str(DEMO_POINTS) and store_credits(demo_backend) == []
    assert box.buy_button.isEnabled()


def test_the_tab_asks_only_while_it_is_shown(
    qtbot: QtBot, tab: Tab, demo_backend: DemoBackend
) -> None:
    window, panel, model, _opened = tab
    url = _buy(qtbot, tab)
    # Another tab: the purchase is still awaited, but nobody asks the server about it.
    window.tabs.setCurrentWidget(window.license_panel)
    qtbot.wait_until(lambda: not model.checking_purchase, timeout=30_000)
    assert model.purchase is not None
    _press(url, "pay")
    assert not model.checking_purchase
    # Shown again: the reload asks on, and the purchase is credited once (by whichever of the
    # verify and the store's notification came first).
    with qtbot.wait_signal(model.points_bought, timeout=30_000):
        window.tabs.setCurrentWidget(window.billing_tab)
    qtbot.wait_until(lambda: panel.points.balance.text() == str(DEMO_POINTS + 100))
    assert len(store_credits(demo_backend)) == 1


def test_an_unreachable_store_is_said_so(qtbot: QtBot, tab: Tab, desktop: Desktop) -> None:
    _window, panel, model, opened = tab
    core = desktop.core
    assert core is not None
    # A port nothing listens on (the discard port, closed on a test machine).
    core.config = dataclasses.replace(core.config, store_checkout_url="http://127.0.0.1:9")
    with qtbot.wait_signal(model.failed, timeout=30_000) as failed:
        panel.points.buy_button.click()
    assert failed.args[0] == "The store cannot be reached. Check the connection and try again."
    assert model.purchase is None and opened == []
