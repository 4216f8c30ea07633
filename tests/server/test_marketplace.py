"""The app marketplace over HTTP: licenses, installations, ``installed``, entitlement snapshots
and the audit trail, driven through the license lifecycle with the fake clock.

The helpers shared with the other marketplace tests are in ``tests/helpers/marketplace.py``.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import httpx
import pytest
from dateutil.relativedelta import relativedelta

from agent.protocol import (
    MarketplacePlan,
)
from tests.helpers.api import assert_problem, bearer
from tests.helpers.backend import BackendFactory
from tests.helpers.marketplace import (
    CHAT,
    GRACE,
    SHA,
    TRIAL,
    Market,
    app_spec,
    at,
    new_tenant,
    open_market,
)

# --- the market ---------------------------------------------------------------------------------


@pytest.fixture
def market(make_backend: BackendFactory) -> Market:
    return open_market(make_backend)


# --- the lifecycle ------------------------------------------------------------------------------


def test_trial_install_expire(market: Market) -> None:
    """Trial → install → listed and entitled → the trial ends → gone from both."""
    start = market.backend.clock.now()
    r = market.license("trial")
    assert r.status_code == 201, r.text
    lic = r.json()
    assert (lic["plan"], lic["status"]) == ("trial", "trial")
    assert at(lic["trial_ends_at"]) == at(lic["expires_at"]) == start + TRIAL
    assert at(lic["started_at"]) == start and lic["grace_until"] is None

    r = market.install(config={"greeting": "hello", "limits": [1, 2], "beta": True})
    assert r.status_code == 201, r.text
    inst = r.json()
    assert inst["backend_id"] == market.tenant.id and inst["app_id"] == CHAT
    assert inst["config"] == {"greeting": "hello", "limits": [1, 2], "beta": True}
    assert inst["artifact"] == {
        "url": "https://dev.example/chat.zip",
        "sha256": SHA,
        "size": 4096,
    }

    r = market.client.get("/marketplace/installed", headers=bearer(market.user_token()))
    assert r.status_code == 200
    (listed,) = r.json()["apps"]
    assert listed["id"] == CHAT and listed["license_status"] == "trial"
    assert listed["iframe_url"] == "https://dev.example/chat/"
    assert listed["permissions"] == ["chat:read", "chat:write"]
    assert "config" not in listed  # a backend's config is not shown to its users
    assert market.entitled() == [market.tenant.id]

    market.backend.clock.set(start + TRIAL - timedelta(seconds=1))
    assert market.installed() == [CHAT]
    market.backend.clock.set(start + TRIAL)
    assert market.installed() == []
    assert market.entitled() == []
    entry = market.catalog_entry()
    assert entry["license"]["status"] == "expired" and entry["installed"] is True

    # The trial is once per app and backend.
    assert_problem(market.license("trial"), 409, "idempotency_conflict")
    assert market.actions()[-1] == ("clock", "license.transition")


def test_a_trial_request_repeated_while_it_runs_is_the_same_trial(market: Market) -> None:
    first = market.license("trial")
    assert first.status_code == 201
    market.backend.clock.advance(3600)
    again = market.license("trial")
    assert again.status_code == 200, again.text
    assert again.json() == first.json()
    assert [a for _, a in market.actions()] == ["license.request"]


def test_paid_license_pending_active_grace_disabled(market: Market) -> None:
    services = market.backend.services.marketplace
    clock = market.backend.clock
    r = market.license("monthly")
    assert r.status_code == 201, r.text
    assert (r.json()["plan"], r.json()["status"]) == ("monthly", "pending")
    assert r.json()["expires_at"] is None
    assert market.license("monthly").status_code == 200  # the same order again
    assert_problem(market.install(), 403, "license_inactive")
    assert market.installed() == []

    paid_at = clock.now()
    view = services.activate_license(market.tenant.id, CHAT)
    assert view.status == "active"
    assert view.expires_at == paid_at + relativedelta(months=1)
    assert view.grace_until == view.expires_at + GRACE
    assert market.install().status_code == 201
    assert market.installed() == [CHAT]
    assert market.entitled() == [market.tenant.id]

    clock.set(view.expires_at)  # unpaid at the end of the period: grace, still usable
    r = market.client.get("/marketplace/installed", headers=bearer(market.user_token()))
    assert [(a["id"], a["license_status"]) for a in r.json()["apps"]] == [(CHAT, "grace")]
    assert market.entitled() == [market.tenant.id]
    assert market.catalog_entry()["license"]["status"] == "grace"

    clock.set(view.grace_until - timedelta(seconds=1))
    assert market.installed() == [CHAT]
    clock.set(view.grace_until)
    assert market.installed() == []
    assert market.entitled() == []
    assert market.catalog_entry()["license"]["status"] == "disabled"
    assert_problem(market.install(), 403, "license_inactive")

    transitions = [
        (row.before, row.after)
        for row in services.audit_trail(backend_id=market.tenant.id)
        if row.action == "license.transition"
    ]
    assert [(b["status"], a["status"]) for b, a in transitions if b and a] == [
        ("active", "grace"),
        ("grace", "disabled"),
    ]

    # Paying after the lapse starts a new period now.
    clock.advance(86400)
    renewed = services.activate_license(market.tenant.id, CHAT)
    assert renewed.status == "active" and renewed.started_at == clock.now()
    assert market.installed() == [CHAT]


def test_renewal_continues_from_the_end_of_the_period(market: Market) -> None:
    services = market.backend.services.marketplace
    clock = market.backend.clock
    assert market.license("yearly").status_code == 201
    first = services.activate_license(market.tenant.id, CHAT)
    assert first.expires_at == clock.now() + relativedelta(years=1)
    assert first.expires_at is not None
    clock.set(first.expires_at + timedelta(days=3))  # paid late, in grace
    renewed = services.activate_license(market.tenant.id, CHAT)
    assert renewed.started_at == first.expires_at
    assert renewed.expires_at == first.expires_at + relativedelta(years=1)
    assert renewed.status == "active"


def test_activate_until_and_perpetual(market: Market) -> None:
    services = market.backend.services.marketplace
    clock = market.backend.clock
    assert market.license("monthly").status_code == 201
    until = clock.now() + timedelta(days=3)
    view = services.activate_license(market.tenant.id, CHAT, until=until)
    assert view.expires_at == until and view.grace_until == until + GRACE

    other = new_tenant(market.backend, "Perpetual Ltd")
    assert market.license("perpetual", tenant=other).status_code == 201
    forever = services.activate_license(other.id, CHAT)
    assert forever.status == "active" and forever.expires_at is None
    assert forever.grace_until is None
    clock.advance(300 * 86400)  # within the admin token's year
    assert market.license("perpetual", tenant=other).json()["status"] == "active"


def test_revoke_removes_the_app_at_once(market: Market) -> None:
    services = market.backend.services.marketplace
    assert market.license("trial").status_code == 201
    assert market.install().status_code == 201
    assert market.installed() == [CHAT]
    view = services.revoke_license(market.tenant.id, CHAT)
    assert view.status == "revoked"
    assert market.installed() == []
    assert market.entitled() == []
    assert market.catalog_entry()["license"]["status"] == "revoked"
    # Only the operator restores a revoked license; the backend cannot order around it.
    assert_problem(market.license("monthly"), 403, "license_inactive")
    assert_problem(market.install(), 403, "license_inactive")
    again = services.revoke_license(market.tenant.id, CHAT)  # idempotent, no second audit row
    assert again.status == "revoked"
    assert [a for _, a in market.actions()].count("license.revoke") == 1


def test_an_order_during_the_trial_keeps_the_trial(market: Market) -> None:
    clock = market.backend.clock
    start = clock.now()
    assert market.license("trial").status_code == 201
    r = market.license("monthly")
    assert r.status_code == 201, r.text
    lic = r.json()
    assert (lic["plan"], lic["status"]) == ("monthly", "trial")
    assert at(lic["trial_ends_at"]) == start + TRIAL
    assert market.install().status_code == 201
    clock.set(start + TRIAL)
    assert market.catalog_entry()["license"]["status"] == "pending"
    assert market.installed() == []
    market.backend.services.marketplace.activate_license(market.tenant.id, CHAT)
    assert market.installed() == [CHAT]


def test_a_trial_while_an_order_waits(market: Market) -> None:
    assert market.license("yearly").status_code == 201
    r = market.license("trial")
    assert r.status_code == 201, r.text
    assert (r.json()["plan"], r.json()["status"]) == ("yearly", "trial")
    assert market.install().status_code == 201


def test_license_requests_that_are_refused(market: Market) -> None:
    services = market.backend.services.marketplace
    assert_problem(market.license("trial", app_id="nothing-here"), 404, "not_found")
    services.create_app(app_spec("monthly-only", prices={MarketplacePlan.MONTHLY: 500}))
    body = assert_problem(market.license("yearly", app_id="monthly-only"), 422, "validation_error")
    assert "not offered on the yearly plan" in body["detail"]
    assert market.license("monthly", app_id="monthly-only").status_code == 201
    assert market.license("monthly").status_code == 201
    services.activate_license(market.tenant.id, CHAT)
    # A paid license in force is neither traded for a trial nor for another plan by the backend.
    assert_problem(market.license("trial"), 409, "already_exists")
    assert_problem(market.license("perpetual"), 409, "already_exists")
    assert market.license("monthly").status_code == 200
    assert market.catalog_entry()["license"]["plan"] == "monthly"
    r = market.client.post(
        "/marketplace/licenses",
        json={"app_id": CHAT, "plan": "lifetime"},
        headers=market.tenant.admin,
    )
    assert_problem(r, 422, "validation_error")


# --- installations ------------------------------------------------------------------------------


def test_install_needs_a_license(market: Market) -> None:
    body = assert_problem(market.install(), 403, "license_inactive")
    assert "no license" in body["detail"]
    assert_problem(market.install(app_id="nothing-here"), 404, "not_found")
    assert market.catalog_entry()["installed"] is False


def test_install_and_uninstall_are_idempotent(market: Market) -> None:
    assert market.license("trial").status_code == 201
    first = market.install(config={"a": 1})
    assert first.status_code == 201
    market.backend.clock.advance(60)
    again = market.install(config={"a": 1})
    assert again.status_code == 200
    assert again.json() == first.json()  # the same installation, installed_at unchanged
    changed = market.install(config={"a": 2})
    assert changed.status_code == 200
    assert changed.json()["config"] == {"a": 2}
    assert changed.json()["installed_at"] == first.json()["installed_at"]

    assert market.uninstall().status_code == 204
    assert market.uninstall().status_code == 204
    assert market.installed() == []
    assert market.catalog_entry()["installed"] is False
    assert_problem(market.uninstall("nothing-here"), 404, "not_found")
    assert [a for _, a in market.actions()] == [
        "license.request",
        "installation.create",
        "installation.config",
        "installation.delete",
    ]


def test_install_config_round_trips(market: Market) -> None:
    assert market.license("trial").status_code == 201
    config = {
        "text": 'Привет \u0000 ✓ "quoted"',
        "big": 2**70,
        "ratio": 0.1,
        "off": False,
        "nothing": None,
        "mixed": [1, "two", 3.5, True],
        "Dotted.key-1": "",
    }
    r = market.install(config=config)
    assert r.status_code == 201, r.text
    assert r.json()["config"] == config
    assert market.install(config=config).status_code == 200  # read back equal: no change
    assert [a for _, a in market.actions()].count("installation.config") == 0


def test_invalid_install_config_is_refused(market: Market) -> None:
    assert market.license("trial").status_code == 201
    for config in (
        {"nested": {"a": 1}},
        {"bad key!": 1},
        {"long": "x" * 1025},
        {"list": list(range(33))},
        {f"k{i}": i for i in range(33)},
    ):
        r = market.install(config=config)
        assert_problem(r, 422, "validation_error")
    assert market.catalog_entry()["installed"] is False


def test_concurrent_installs_make_one_installation(market: Market) -> None:
    assert market.license("trial").status_code == 201
    senders = 6
    barrier = threading.Barrier(senders)

    def send(_: int) -> int:
        with httpx.Client(base_url=market.backend.url, timeout=30) as client:
            barrier.wait(timeout=30)
            r = client.post(
                "/marketplace/installations",
                json={"app_id": CHAT},
                headers=market.tenant.admin,
            )
            return r.status_code

    with ThreadPoolExecutor(senders) as pool:
        codes = sorted(pool.map(send, range(senders)))
    assert codes == [200] * (senders - 1) + [201]
    assert [a for _, a in market.actions()].count("installation.create") == 1


# --- catalog, installed, entitlements -----------------------------------------------------------


def test_catalog_lists_every_app_with_this_backends_state(market: Market) -> None:
    market.backend.services.marketplace.create_app(
        app_spec("board", prices={MarketplacePlan.PERPETUAL: 100}, permissions=())
    )
    other = new_tenant(market.backend, "Other")
    assert market.license("trial", tenant=other).status_code == 201
    r = market.client.get("/marketplace/catalog", headers=market.tenant.admin)
    assert r.status_code == 200
    apps = r.json()["apps"]
    assert [a["id"] for a in apps] == ["board", CHAT]
    board, chat = apps
    assert board["prices"] == {"currency": "USD", "monthly": None, "yearly": None, "perpetual": 100}
    assert board["permissions"] == []
    # The other backend's trial is not this backend's license.
    assert chat["license"] is None and chat["installed"] is False
    assert chat["artifact"]["sha256"] == SHA
    assert "callback_url" not in chat


def test_entitlements_list_installed_and_licensed_backends(market: Market) -> None:
    b, c = new_tenant(market.backend, "B"), new_tenant(market.backend, "C")
    for tenant in (market.tenant, b, c):
        assert market.license("trial", tenant=tenant).status_code == 201
    for tenant in (market.tenant, b):
        assert market.install(tenant=tenant).status_code == 201
    # Licensed but not installed: not entitled.
    assert market.entitled() == sorted([market.tenant.id, b.id])
    # Never cached: a revocation shows in the very next snapshot.
    r = market.client.get(f"/marketplace/apps/{CHAT}/entitlements")
    assert r.headers["cache-control"] == "no-store"
    assert_problem(
        market.client.get("/marketplace/apps/nothing-here/entitlements"), 404, "not_found"
    )
    # Another app's snapshot says nothing of this one.
    market.backend.services.marketplace.create_app(app_spec("board"))
    assert market.entitled("board") == []


def test_installed_is_per_backend(market: Market) -> None:
    other = new_tenant(market.backend, "Other")
    assert market.license("trial").status_code == 201
    assert market.install().status_code == 201
    assert market.installed() == [CHAT]
    assert market.installed(tenant=other) == []


# --- the audit trail and the sweeper ------------------------------------------------------------


def test_every_change_is_audited(market: Market) -> None:
    services = market.backend.services.marketplace
    clock = market.backend.clock
    assert market.license("monthly").status_code == 201
    services.activate_license(market.tenant.id, CHAT)
    assert market.install(config={"x": 1}).status_code == 201
    assert market.uninstall().status_code == 204
    services.revoke_license(market.tenant.id, CHAT)
    actor = f"backend:{market.tenant.id}"
    assert market.actions() == [
        (actor, "license.request"),
        ("operator", "license.activate"),
        (actor, "installation.create"),
        (actor, "installation.delete"),
        ("operator", "license.revoke"),
    ]
    trail = services.audit_trail(backend_id=market.tenant.id, app_id=CHAT)
    request, activate = trail[0], trail[1]
    assert request.before is None and request.after is not None
    assert request.after["status"] == "pending" and request.after["plan"] == "monthly"
    assert activate.before == request.after
    assert activate.after is not None and activate.after["status"] == "active"
    assert activate.after["paid_at"] == clock.now().isoformat()
    assert all(row.at == clock.now() for row in trail)
    assert trail[3].before == {"installed_at": clock.now().isoformat(), "config": {"x": 1}}
    assert trail[3].after is None
    everything = [row.action for row in services.audit_trail(backend_id=market.tenant.id)]
    assert everything[0] == "backend.create"
    assert next(row.action for row in services.audit_trail(app_id=CHAT)) == "app.create"


def test_the_sweeper_writes_what_the_clock_changed(market: Market) -> None:
    services = market.backend.services.marketplace
    clock = market.backend.clock
    start = clock.now()
    assert market.license("trial").status_code == 201
    assert services.settle_due() == 0
    clock.set(start + TRIAL)
    assert services.settle_due() == 1
    assert services.settle_due() == 0  # written once
    (row,) = [r for r in services.audit_trail(backend_id=market.tenant.id) if r.actor == "clock"]
    assert row.action == "license.transition" and row.at == start + TRIAL
    assert row.before is not None and row.after is not None
    assert (row.before["status"], row.after["status"]) == ("trial", "expired")
    # A read afterwards finds nothing left to write.
    assert market.catalog_entry()["license"]["status"] == "expired"
    assert [r.actor for r in services.audit_trail(backend_id=market.tenant.id)].count("clock") == 1


def test_trial_and_grace_lengths_are_settings(make_backend: BackendFactory) -> None:
    backend = make_backend(marketplace_trial_days=3, marketplace_grace_days=0)
    backend.services.marketplace.create_app(app_spec())
    market = Market(backend, new_tenant(backend))
    start = backend.clock.now()
    r = market.license("trial")
    assert at(r.json()["trial_ends_at"]) == start + timedelta(days=3)
    backend.clock.set(start + timedelta(days=3))
    assert market.catalog_entry()["license"]["status"] == "expired"
    assert market.license("monthly").status_code == 201
    view = backend.services.marketplace.activate_license(market.tenant.id, CHAT)
    assert view.grace_until == view.expires_at
    assert view.expires_at is not None
    backend.clock.set(view.expires_at)
    assert market.catalog_entry()["license"]["status"] == "disabled"
