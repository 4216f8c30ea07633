"""The "Points" section of the "Plans & billing" tab against the demo backend (real HTTP): the
demo's granted points shown; points converted into messages after a confirmation, the balance,
history and the License tab's quota following; too many points refused in the window's language;
a plan that sells no messages says why converting is off."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from PyQt6.QtWidgets import QTableWidget
from pytestqt.qtbot import QtBot

from agent.protocol import ProviderName, SubscriptionState
from app.demo import DemoBackend
from app.demo_billing import DEMO_POINTS, DEMO_TOPUP_RATE
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


@pytest.fixture
def demo_backend(tmp_path: Path) -> Iterator[DemoBackend]:
    with billing_backend(tmp_path / "server") as backend:
        yield backend


@pytest.fixture
def tab(qtbot: QtBot, desktop: Desktop, tmp_path: Path) -> Tab:
    return open_tab(qtbot, desktop, tmp_path)


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

    # More points than the wallet holds: refused, in the window's language; nothing spent.
    window.translator.set_language("ru")
    box.spin.setValue(DEMO_POINTS)
    box.convert_button.click()
    with qtbot.wait_signal(model.failed, timeout=30_000) as refused:
        box.confirm_button.click()
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
