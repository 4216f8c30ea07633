"""Reports over licenses: counts by month, the renewals forecast and the dashboard's KPIs.

Each is one aggregate query (a month is a set of conditional sums in the same scan), so the cost
is one pass over ``licenses`` whatever the range. Licenses awaiting their first approval
(``pending_approval``) never count; a revoked license counts until its ``revoked_at``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import ColumnElement, and_, case, func, or_, select
from sqlalchemy.orm import Session

from ...portal_models import Activation, Contract, License, LicenseVersion
from ..tabular import Cell
from .table import Report, month_label, next_month

EXPIRING_WITHIN: Final = timedelta(days=30)


def _count(condition: ColumnElement[bool]) -> Any:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


def _sum(condition: ColumnElement[bool], value: Any) -> Any:
    return func.coalesce(func.sum(case((condition, value), else_=0)), 0)


def by_month(session: Session, starts: list[datetime]) -> Report:
    """Per month, as of its end: licenses in force, those of them ending within 30 days, and
    licenses whose validity ended during the month."""
    columns = []
    for start in starts:
        end = next_month(start)
        counted = and_(
            License.valid_from < end, or_(License.revoked_at.is_(None), License.revoked_at >= end)
        )
        in_force = and_(counted, License.valid_until >= end)
        columns += [
            _count(in_force),
            _count(and_(in_force, License.valid_until < end + EXPIRING_WITHIN)),
            _count(and_(counted, License.valid_until >= start, License.valid_until < end)),
        ]
    row = session.execute(select(*columns).where(License.status != "pending_approval")).one()
    rows: list[tuple[Cell, ...]] = [
        (month_label(start), int(row[3 * i]), int(row[3 * i + 1]), int(row[3 * i + 2]))
        for i, start in enumerate(starts)
    ]
    return Report("licenses-by-month", ("month", "active", "expiring", "expired"), rows)


def contract_shares(*conditions: ColumnElement[bool]) -> Any:
    """Each license's share of its contract's amount (subquery: license_id, modules, product_id,
    valid_until, status, currency, share): the amount split evenly over the contract's licenses
    in minor units, the remainder one unit each to the first licenses by id, so the shares add up
    to the amount exactly."""
    n = func.count().over(partition_by=License.contract_id)
    r = func.row_number().over(partition_by=License.contract_id, order_by=License.id) - 1
    ranked = (
        select(
            License.id.label("license_id"),
            License.modules.label("modules"),
            License.valid_until.label("valid_until"),
            License.status.label("status"),
            Contract.currency.label("currency"),
            Contract.amount_minor.label("amount"),
            n.label("n"),
            r.label("r"),
        )
        .join(Contract, Contract.id == License.contract_id)
        .where(License.status != "pending_approval", *conditions)
        .subquery()
    )
    share = ranked.c.amount // ranked.c.n + case(
        (ranked.c.r < ranked.c.amount % ranked.c.n, 1), else_=0
    )
    return select(
        ranked.c.license_id,
        ranked.c.modules,
        ranked.c.valid_until,
        ranked.c.status,
        ranked.c.currency,
        share.label("share"),
    ).subquery()


def renewals_forecast(session: Session, starts: list[datetime], now: datetime) -> Report:
    """Per month ahead and currency: active licenses whose validity ends in it (from now on) and
    their share of their contracts' amounts (licenses without a contract: currency empty)."""
    shares = contract_shares()
    base = (
        select(License.id, License.valid_until, shares.c.currency, shares.c.share)
        .outerjoin(shares, shares.c.license_id == License.id)
        .where(License.status == "active", License.valid_until >= now)
        .subquery()
    )
    columns = []
    for start in starts:
        end = next_month(start)
        inside = and_(base.c.valid_until >= start, base.c.valid_until < end)
        columns += [_count(inside), _sum(inside, func.coalesce(base.c.share, 0))]
    result = session.execute(select(base.c.currency, *columns).group_by(base.c.currency)).all()
    rows: list[tuple[Cell, ...]] = []
    for i, start in enumerate(starts):
        for currency_row in sorted(result, key=lambda r: r[0] or ""):
            licenses = int(currency_row[1 + 2 * i])
            if licenses:
                amount = int(currency_row[2 + 2 * i])
                rows.append((month_label(start), currency_row[0] or "", licenses, amount))
    return Report("renewals-forecast", ("month", "currency", "licenses", "amount_minor"), rows)


def dashboard(session: Session, now: datetime) -> dict[str, int]:
    active = and_(License.status == "active", License.valid_from <= now)
    row = session.execute(
        select(
            _count(and_(active, License.valid_until > now)),
            _count(
                and_(
                    active, License.valid_until > now, License.valid_until <= now + EXPIRING_WITHIN
                )
            ),
            _count(and_(License.status == "active", License.valid_until <= now)),
        )
    ).one()
    pending = session.scalar(
        select(func.count()).where(
            LicenseVersion.approved_at.is_(None), LicenseVersion.rejected_at.is_(None)
        )
    )
    live = session.scalar(select(func.count()).where(Activation.deactivated_at.is_(None)))
    return {
        "active_licenses": int(row[0]),
        "expiring_30_days": int(row[1]),
        "expired_licenses": int(row[2]),
        "pending_approvals": int(pending or 0),
        "live_activations": int(live or 0),
    }
