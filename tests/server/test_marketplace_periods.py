"""Paid marketplace licenses renew from a fixed anchor, so month ends never drift (migration 0019,
docs/marketplace.md, "License lifecycle"): driven with the fake clock on SQLite and PostgreSQL."""

from __future__ import annotations

from calendar import monthrange
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy import inspect
from sqlalchemy.orm import Session

from server_stub import db
from server_stub.db import transaction
from server_stub.models import BackendLicense, MarketplaceApp, MarketplaceBackend
from server_stub.services.marketplace import LicenseView
from server_stub.services.marketplace.specs import apply_spec
from tests.helpers.audit import alembic_config
from tests.helpers.backend import BackendFactory
from tests.helpers.marketplace import CHAT, GRACE, Market, app_spec, at, open_market

NOON = 12


def day(year: int, month: int, d: int, hour: int = NOON) -> datetime:
    return datetime(year, month, d, hour, tzinfo=UTC)


@pytest.fixture
def market(make_backend: BackendFactory) -> Market:
    return open_market(make_backend)


def pay(market: Market, when: datetime, *, until: datetime | None = None) -> LicenseView:
    """The operator marks the license paid at ``when``."""
    market.backend.clock.set(when)
    return market.backend.services.marketplace.activate_license(market.tenant.id, CHAT, until=until)


def renew_on_time(market: Market, view: LicenseView) -> LicenseView:
    """Pay a day before the period ends (the license is still active)."""
    assert view.expires_at is not None and view.status == "active"
    renewed = pay(market, view.expires_at - timedelta(days=1))
    assert renewed.started_at == view.expires_at  # from the end: no day lost or gained
    return renewed


def last_activation(market: Market) -> dict[str, object]:
    trail = market.backend.services.marketplace.audit_trail(backend_id=market.tenant.id)
    after = [row.after for row in trail if row.action == "license.activate"][-1]
    assert after is not None
    return after


def forget_anchor(market: Market) -> None:
    """Make the license look paid before migration 0019 (no anchor stored)."""
    with transaction(market.backend.services.ctx.write) as session:
        session.execute(sa.update(BackendLicense).values(period_anchor=None))


def test_monthly_from_jan_31_keeps_the_anchors_day_for_13_renewals(market: Market) -> None:
    assert market.license("monthly").status_code == 201
    view = pay(market, day(2028, 1, 31))
    ends = [view.expires_at]
    for _ in range(13):
        view = renew_on_time(market, view)
        ends.append(view.expires_at)
    # The anchor's day (the 31st) whenever the month has it, else the month's last day.
    months = [(2028 + m // 12, m % 12 + 1) for m in range(1, 15)]  # Feb 2028 .. Mar 2029
    assert ends == [day(y, m, min(31, monthrange(y, m)[1])) for y, m in months]
    assert ends[:3] == [day(2028, 2, 29), day(2028, 3, 31), day(2028, 4, 30)]  # not Mar 29
    assert ends[-2:] == [day(2029, 2, 28), day(2029, 3, 31)]
    assert view.grace_until == day(2029, 3, 31) + GRACE
    assert last_activation(market)["period_anchor"] == day(2028, 1, 31).isoformat()
    # Over HTTP the license reads as before (the anchor is not on the wire). The admin token of
    # 2026 has expired by now: the operator issues a new one.
    services = market.backend.services.marketplace
    market.tenant.admin_token = services.reissue_admin_token(market.tenant.id).token
    lic = market.catalog_entry()["license"]
    assert set(lic) == {
        "app_id",
        "plan",
        "status",
        "started_at",
        "expires_at",
        "grace_until",
        "trial_ends_at",
    }
    assert (lic["status"], at(lic["started_at"]), at(lic["expires_at"])) == (
        "active",
        day(2029, 2, 28),
        day(2029, 3, 31),
    )


def test_yearly_from_feb_29_comes_back_in_leap_years(market: Market) -> None:
    assert market.license("yearly").status_code == 201
    view = pay(market, day(2028, 2, 29))
    ends = [view.expires_at]
    for year in range(4):
        assert view.expires_at is not None
        if year == 1:  # paid late, in the grace: still renewed from the end, on the anchor
            view = pay(market, view.expires_at + timedelta(days=3))
            assert view.status == "active"
        else:
            view = renew_on_time(market, view)
        ends.append(view.expires_at)
    assert ends == [
        day(2029, 2, 28),
        day(2030, 2, 28),
        day(2031, 2, 28),
        day(2032, 2, 29),
        day(2033, 2, 28),
    ]


def test_a_lapsed_license_repaid_starts_a_new_anchor(market: Market) -> None:
    assert market.license("monthly").status_code == 201
    first = pay(market, day(2028, 1, 31))
    assert first.grace_until is not None
    market.backend.clock.set(first.grace_until)
    assert market.backend.services.marketplace.settle_due() == 1
    # Ordered again after the lapse: pending, and the old anchor is gone with the old period.
    services = market.backend.services.marketplace
    market.tenant.admin_token = services.reissue_admin_token(market.tenant.id).token
    r = market.license("monthly")
    assert r.status_code == 201 and r.json()["status"] == "pending", r.text
    trail = services.audit_trail(backend_id=market.tenant.id, app_id=CHAT)
    assert trail[-1].after is not None and trail[-1].after["period_anchor"] is None

    view = pay(market, day(2028, 4, 30, hour=10))
    assert (view.started_at, view.expires_at) == (day(2028, 4, 30, 10), day(2028, 5, 30, 10))
    view = renew_on_time(market, view)
    view = renew_on_time(market, view)
    # Jul 30, not Jul 31: the anchor is the repayment's Apr 30, not the first payment's Jan 31.
    assert view.expires_at == day(2028, 7, 30, 10)
    assert last_activation(market)["period_anchor"] == day(2028, 4, 30, 10).isoformat()


def test_disabled_then_paid_without_a_new_order_also_starts_over(market: Market) -> None:
    assert market.license("monthly").status_code == 201
    first = pay(market, day(2028, 1, 31))
    assert first.grace_until is not None
    view = pay(market, first.grace_until + timedelta(days=1))
    assert view.started_at == first.grace_until + timedelta(days=1)
    assert view.expires_at == day(2028, 4, 8)  # Mar 8 12:00 + a month
    assert last_activation(market)["period_anchor"] == day(2028, 3, 8).isoformat()


def test_until_ends_the_period_there_and_anchors_the_next(market: Market) -> None:
    assert market.license("monthly").status_code == 201
    view = pay(market, day(2028, 1, 31))
    view = pay(market, day(2028, 2, 20), until=day(2028, 3, 31, hour=0))
    assert view.expires_at == day(2028, 3, 31, 0)
    assert view.grace_until == day(2028, 3, 31, 0) + GRACE
    assert last_activation(market)["period_anchor"] == day(2028, 3, 31, 0).isoformat()
    view = renew_on_time(market, view)  # a whole month from the explicit end
    assert view.expires_at == day(2028, 4, 30, 0)
    view = renew_on_time(market, view)
    assert view.expires_at == day(2028, 5, 31, 0)  # May 30 if it drifted from Apr 30


def test_a_license_paid_before_0019_takes_its_periods_start_as_anchor(market: Market) -> None:
    assert market.license("monthly").status_code == 201
    view = pay(market, day(2028, 1, 31))
    forget_anchor(market)
    view = renew_on_time(market, view)
    assert view.expires_at == day(2028, 3, 31)  # from the Jan 31 start, not Feb 29 + 1 month
    assert last_activation(market)["period_anchor"] == day(2028, 1, 31).isoformat()
    view = renew_on_time(market, view)
    assert view.expires_at == day(2028, 4, 30)


def test_a_license_paid_before_0019_until_a_date_renews_a_whole_period_from_it(
    market: Market,
) -> None:
    assert market.license("monthly").status_code == 201
    view = pay(market, day(2028, 1, 31), until=day(2028, 2, 10, hour=0))
    forget_anchor(market)  # its period (Jan 31 .. Feb 10) is no whole month: no anchor to infer
    view = renew_on_time(market, view)
    assert (view.started_at, view.expires_at) == (day(2028, 2, 10, 0), day(2028, 3, 10, 0))
    assert last_activation(market)["period_anchor"] == day(2028, 2, 10, 0).isoformat()


def test_perpetual_has_no_anchor(market: Market) -> None:
    assert market.license("perpetual").status_code == 201
    view = pay(market, day(2028, 1, 31))
    assert view.expires_at is None
    assert last_activation(market)["period_anchor"] is None


# --- the migration ------------------------------------------------------------------------------


def _license_columns(conn: sa.Connection) -> set[str]:
    return {column["name"] for column in inspect(conn).get_columns("backend_licenses")}


def test_migration_0019_adds_the_anchor_and_takes_it_away(database_url: str) -> None:
    engine = db.make_engine(database_url)
    when = day(2028, 1, 31)
    try:
        db.upgrade(engine)
        with Session(engine) as session, session.begin():
            session.add(MarketplaceBackend(id="b1", name="Acme", created_at=when))
            app = MarketplaceApp(id=CHAT, created_at=when)
            apply_spec(app, app_spec())
            session.add(app)
            session.flush()
            session.add(
                BackendLicense(
                    backend_id="b1",
                    app_id=CHAT,
                    plan="monthly",
                    status="active",
                    created_at=when,
                    updated_at=when,
                    started_at=when,
                    expires_at=day(2028, 2, 29),
                    paid_at=when,
                    period_anchor=when,
                )
            )
        dates = sa.text("SELECT backend_id, plan, expires_at FROM backend_licenses")
        with engine.begin() as conn:
            before = conn.execute(dates).all()
            command.downgrade(alembic_config(conn), "0018")
        with engine.connect() as conn:
            assert "period_anchor" not in _license_columns(conn)
            assert conn.execute(dates).all() == before  # the license survives the rebuild
        db.upgrade(engine)
        with engine.connect() as conn:
            assert "period_anchor" in _license_columns(conn)
            anchors = conn.execute(sa.text("SELECT period_anchor FROM backend_licenses")).all()
            assert anchors == [(None,)]  # no backfill: the next renewal infers it
    finally:
        engine.dispose()
