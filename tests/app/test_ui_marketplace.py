"""The Marketplace panel against the demo's marketplace (a real reference backend, artifacts on a
local HTTP server): the catalog with statuses, a trial, an install with progress, a mismatching
artifact that installs nothing, uninstall, and the connection kept in the keyring."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot

from agent.protocol import MarketplacePlan
from app.demo import DemoBackend, DemoMarketplace, demo_artifact
from app.engine import Engine
from app.i18n import Translator
from app.ui.marketplace_panel import MarketplacePanel
from app.viewmodels.marketplace import ADMIN_TOKEN_ACCOUNT, MarketplaceViewModel
from server_stub.services.marketplace import AppSpec
from tests.helpers.desktop import Desktop
from tests.helpers.keyrings import MemoryKeyring
from tests.helpers.windows import main_window


@pytest.fixture
def market(demo_backend: DemoBackend) -> DemoMarketplace:
    assert demo_backend.marketplace is not None
    return demo_backend.marketplace


@pytest.fixture
def keyring() -> MemoryKeyring:
    return MemoryKeyring()


def make_panel(
    qtbot: QtBot,
    engine: Engine,
    data_dir: Path,
    keyring: MemoryKeyring,
    defaults: tuple[str, str] | None = None,
) -> MarketplacePanel:
    model = MarketplaceViewModel(
        engine, Translator("en"), data_dir, keyring_backend=keyring, defaults=defaults
    )
    panel = MarketplacePanel(model, model.translator)
    model.setParent(panel)
    qtbot.addWidget(panel)
    return panel


@pytest.fixture
def panel(
    qtbot: QtBot,
    engine: Engine,
    demo_backend: DemoBackend,
    market: DemoMarketplace,
    keyring: MemoryKeyring,
    tmp_path: Path,
) -> MarketplacePanel:
    """A panel connected through its fields (Save and connect)."""
    widget = make_panel(qtbot, engine, tmp_path / "desktop", keyring)
    widget.url.setText(demo_backend.url)
    widget.token.setText(market.admin_token)
    with qtbot.wait_signal(widget._vm.saved):
        widget.save_button.click()
    return widget


def vm(panel: MarketplacePanel) -> MarketplaceViewModel:
    return panel._vm


def test_connecting_shows_the_catalog_and_keeps_the_connection(
    qtbot: QtBot,
    engine: Engine,
    panel: MarketplacePanel,
    demo_backend: DemoBackend,
    market: DemoMarketplace,
    keyring: MemoryKeyring,
    tmp_path: Path,
) -> None:
    assert list(panel.cards) == ["crm", "notes", "polls"]
    crm, notes, polls = (panel.cards[i] for i in ("crm", "notes", "polls"))
    assert crm.name.text() == "Contacts CRM"
    assert crm.developer.text() == "by Example Apps Ltd"
    assert crm.prices.text() == (
        "Monthly: 19.90 EUR  ·  Yearly: 199.00 EUR  ·  Perpetual: 499.00 EUR"
    )
    assert notes.prices.text() == "Free on every plan"
    assert polls.prices.text() == "Monthly: 4.90 USD  ·  Yearly: 49.00 USD  ·  Perpetual: —"
    assert [polls.plan.itemData(i) for i in range(polls.plan.count())] == ["monthly", "yearly"]
    for card in (crm, notes, polls):
        assert card.status.text() == "No license"
        assert not card.install_button.isEnabled()
    for card in (crm, polls):
        assert card.trial_button.isEnabled()
    assert panel.installed_list.item(0).text() == "No apps installed."  # type: ignore[union-attr]

    # The token went to the keyring, the URL to marketplace.json; a new panel finds both.
    assert keyring.data[("TGFlow", ADMIN_TOKEN_ACCOUNT)] == market.admin_token
    stored = json.loads((tmp_path / "desktop" / "marketplace.json").read_text())
    assert stored == {"url": demo_backend.url}
    again = make_panel(qtbot, engine, tmp_path / "desktop", keyring)
    with qtbot.wait_signal(vm(again).changed):
        again.show()  # the tab's first showing reads the connection
    assert again.url.text() == demo_backend.url
    assert again.token.text() == market.admin_token
    assert list(again.cards) == ["crm", "notes", "polls"]


@pytest.fixture
def prefilled(
    qtbot: QtBot,
    engine: Engine,
    demo_backend: DemoBackend,
    market: DemoMarketplace,
    keyring: MemoryKeyring,
    tmp_path: Path,
) -> MarketplacePanel:
    """A panel with the demo's connection as its defaults, not loaded yet."""
    return make_panel(
        qtbot,
        engine,
        tmp_path / "desktop",
        keyring,
        defaults=(demo_backend.url, market.admin_token),
    )


def test_the_demo_prefills_the_connection(
    qtbot: QtBot, prefilled: MarketplacePanel, keyring: MemoryKeyring
) -> None:
    panel = prefilled
    with qtbot.wait_signal(vm(panel).changed):
        vm(panel).load()
    assert len(panel.cards) == 3
    assert keyring.data == {}  # nothing stored until the user saves


def test_a_wrong_token_is_refused_and_not_stored(
    qtbot: QtBot,
    engine: Engine,
    demo_backend: DemoBackend,
    keyring: MemoryKeyring,
    tmp_path: Path,
) -> None:
    panel = make_panel(qtbot, engine, tmp_path / "desktop", keyring)
    panel.url.setText(demo_backend.url)
    panel.token.setText("not-a-token")
    with qtbot.assert_not_emitted(vm(panel).saved), qtbot.wait_signal(vm(panel).failed) as failed:
        panel.save_button.click()
    assert failed.args[0].startswith("The marketplace refused the admin token")
    assert not panel.error.isHidden()
    assert keyring.data == {}
    assert not (tmp_path / "desktop" / "marketplace.json").exists()


def test_trial_then_install_with_progress_then_uninstall(
    qtbot: QtBot, panel: MarketplacePanel, tmp_path: Path
) -> None:
    model = vm(panel)
    with qtbot.wait_signal(model.license_changed) as changed:
        panel.cards["polls"].trial_button.click()
    assert changed.args == ["polls", "trial"]
    polls = panel.cards["polls"]
    assert polls.status.text() == "License: trial"
    assert polls.install_button.isEnabled() and not polls.trial_button.isEnabled()

    progress: list[tuple[str, int, int]] = []
    model.progress.connect(lambda *args: progress.append(args))
    with qtbot.wait_signal(model.installed) as installed:
        polls.install_button.click()
    assert installed.args == ["polls"]
    body = demo_artifact("polls")
    assert progress and progress[-1] == ("polls", len(body), len(body))
    files = tmp_path / "desktop" / "apps" / "polls"
    assert (files / "polls-1.0.zip").read_bytes() == body
    assert [p.name for p in (tmp_path / "desktop" / "apps").iterdir()] == ["polls"]
    assert panel.installed_list.item(0).text() == "Polls — trial"  # type: ignore[union-attr]
    assert panel.cards["polls"].status.text() == "License: trial · installed"
    assert panel.status.text() == "Polls is installed."

    with qtbot.wait_signal(model.uninstalled):
        panel.cards["polls"].uninstall_button.click()
    assert not files.exists()
    assert panel.installed_list.item(0).text() == "No apps installed."  # type: ignore[union-attr]
    assert not panel.cards["polls"].uninstall_button.isEnabled()


def test_requesting_a_purchase_leaves_the_license_pending(
    qtbot: QtBot, panel: MarketplacePanel
) -> None:
    crm = panel.cards["crm"]
    crm.plan.setCurrentIndex(crm.plan.findData("yearly"))
    with qtbot.wait_signal(vm(panel).license_changed) as changed:
        crm.purchase_button.click()
    assert changed.args == ["crm", "pending"]
    assert panel.cards["crm"].status.text() == "License: awaiting payment"
    assert not panel.cards["crm"].install_button.isEnabled()


def test_a_mismatching_artifact_shows_an_error_and_installs_nothing(
    qtbot: QtBot,
    panel: MarketplacePanel,
    demo_backend: DemoBackend,
    market: DemoMarketplace,
    tmp_path: Path,
) -> None:
    body = b"not what the catalog says"
    url = market.artifacts.serve("/bad/bad.zip", body)
    demo_backend.services.marketplace.create_app(
        AppSpec(
            id="bad",
            name="Bad",
            developer="Mallory",
            currency="USD",
            prices={MarketplacePlan.MONTHLY: 100},
            artifact_url=url,
            artifact_sha256=hashlib.sha256(b"something else").hexdigest(),
            artifact_size=len(body),
            iframe_url=market.artifacts.url + "/bad/",
            callback_url=market.artifacts.url + "/bad/callback",
        )
    )
    model = vm(panel)
    with qtbot.wait_signal(model.changed):
        panel.refresh_button.click()
    with qtbot.wait_signal(model.license_changed):
        panel.cards["bad"].trial_button.click()

    with qtbot.assert_not_emitted(model.installed), qtbot.wait_signal(model.failed) as failed:
        panel.cards["bad"].install_button.click()
    assert "does not match the catalog" in failed.args[0]
    assert "SHA-256" in failed.args[0]
    assert panel.error.text() == failed.args[0] and not panel.error.isHidden()
    apps = tmp_path / "desktop" / "apps"
    assert list(apps.iterdir()) == []  # no files, no staging left
    with qtbot.wait_signal(model.changed):
        panel.refresh_button.click()
    assert not panel.cards["bad"].card.installed  # the marketplace was never told


def test_the_main_window_builds_the_tab_when_it_is_opened(
    qtbot: QtBot, desktop: Desktop, tmp_path: Path
) -> None:
    window = main_window(qtbot, desktop, tmp_path, language="en")
    assert window.marketplace_panel is None
    index = window.tabs.indexOf(window.marketplace_tab)
    assert window.tabs.tabText(index) == "Marketplace"
    window.tabs.setCurrentIndex(index)
    assert window.marketplace_panel is not None


def test_a_second_demo_start_re_points_the_listed_apps_through_the_service(
    tmp_path: Path,
) -> None:
    from app.demo import start_demo_backend

    first = start_demo_backend(tmp_path / "server", rate_limit_enabled=False)
    assert first.marketplace is not None
    old = {app.id: app.artifact_url for app in first.services.marketplace.list_apps()}
    first.stop()

    second = start_demo_backend(tmp_path / "server", rate_limit_enabled=False)
    try:
        assert second.marketplace is not None
        market = second.services.marketplace
        new = {app.id: app.artifact_url for app in market.list_apps()}
        assert set(new) == set(old)
        assert all(new[i].startswith(second.marketplace.artifacts.url) for i in new)
        assert all(new[i] != old[i] for i in new)
        actions = [row.action for row in market.audit_trail(app_id="notes")]
        assert actions.count("app.update") == 1
    finally:
        second.stop()


def test_a_free_app_offers_neither_trial_nor_purchase(
    qtbot: QtBot, panel: MarketplacePanel
) -> None:
    notes = panel.cards["notes"]
    assert notes.trial_button.isHidden()
    assert notes.plan.isHidden()
    assert notes.purchase_button.text() == "Get it free"
    with qtbot.wait_signal(vm(panel).license_changed) as changed:
        notes.purchase_button.click()
    assert changed.args == ["notes", "active"]
    notes = panel.cards["notes"]  # the catalog is shown again
    assert notes.install_button.isEnabled()
    assert notes.purchase_button.isHidden() and notes.trial_button.isHidden()


def test_actions_asked_for_while_busy_wait_their_turn(
    qtbot: QtBot, panel: MarketplacePanel, tmp_path: Path
) -> None:
    # A refresh (say, the user's click) is running when the trial and the install are asked
    # for: both run after it, in order, and none is dropped.
    model = vm(panel)
    order: list[str] = []
    model.license_changed.connect(lambda app_id, status: order.append(f"license:{status}"))
    model.installed.connect(lambda app_id: order.append(f"installed:{app_id}"))
    with qtbot.wait_signal(model.installed, timeout=20_000):
        assert model.refresh()
        busy_while_asked = model.busy
        assert model.start_trial("polls")
        assert model.install("polls")
    assert busy_while_asked
    assert not model.busy  # the last one's answer ended the queue
    assert order == ["license:trial", "installed:polls"]
    assert (tmp_path / "desktop" / "apps" / "polls" / "polls-1.0.zip").exists()


def test_an_action_that_needs_the_connection_waits_for_it_to_load(
    qtbot: QtBot, prefilled: MarketplacePanel
) -> None:
    model = vm(prefilled)
    assert not model.refresh()  # nothing loaded, nothing loading: nothing to refresh
    assert model.load()
    with qtbot.wait_signal(model.license_changed) as changed:
        assert model.start_trial("polls")  # asked while the connection loads
    assert changed.args == ["polls", "trial"]
