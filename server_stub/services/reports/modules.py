"""Reports per module: usage from heartbeats, and sales (plan vs fact).

A license's modules are a JSON list; the queries expand it in SQL (SQLite's ``json_each``,
PostgreSQL's ``json_array_elements_text``), so every figure is an aggregate of the database.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, case, exists, func, select, true
from sqlalchemy.orm import Session

from ...portal_models import Contract, License, ModuleUsage, ProductModule
from ..tabular import Cell
from .licenses import contract_shares
from .table import Report


def _elements(session: Session, column: Any) -> Any:
    """The JSON list ``column`` as a table of one column, ``value`` (joined laterally)."""
    if session.get_bind().dialect.name == "postgresql":
        return func.json_array_elements_text(column).table_valued("value").alias("m")
    return func.json_each(column).table_valued("value").alias("m")


def usage(session: Session, first: date, last: date) -> Report:
    """Per module: active licenses holding it (in force at some time in the range), licenses
    that sent heartbeats with it in the range, those heartbeats, and the holders that sent none
    (licensed but idle)."""
    in_range = and_(ModuleUsage.day >= first, ModuleUsage.day <= last)
    used = {
        module: (int(licenses), int(heartbeats))
        for module, licenses, heartbeats in session.execute(
            select(
                ModuleUsage.module,
                func.count(func.distinct(ModuleUsage.license_id)),
                func.sum(ModuleUsage.heartbeats),
            )
            .where(in_range, ModuleUsage.heartbeats > 0)
            .group_by(ModuleUsage.module)
        )
    }
    m = _elements(session, License.modules)
    heard = exists().where(
        ModuleUsage.license_id == License.id,
        ModuleUsage.module == m.c.value,
        ModuleUsage.heartbeats > 0,
        in_range,
    )
    held = {
        module: (int(licensed), int(idle))
        for module, licensed, idle in session.execute(
            select(m.c.value, func.count(), func.sum(case((heard, 0), else_=1)))
            .select_from(License)
            .join(m, true())
            .where(
                License.status == "active",
                License.valid_until >= datetime.combine(first, time(), UTC),
                License.valid_from < datetime.combine(last + timedelta(days=1), time(), UTC),
            )
            .group_by(m.c.value)
        )
    }
    rows: list[tuple[Cell, ...]] = []
    for module in sorted(set(used) | set(held)):
        licensed, idle = held.get(module, (0, 0))
        using, heartbeats = used.get(module, (0, 0))
        rows.append((module, licensed, using, heartbeats, idle))
    return Report("module-usage", ("module", "licensed", "using", "heartbeats", "idle"), rows)


def sales(session: Session, first: date | None, last: date | None) -> Report:
    """Per module and currency: plan (the module's list price for each license holding it) vs
    fact (contract amounts attributed to modules: see docs/licensing.md, "Reports")."""
    conditions: list[ColumnElement[bool]] = []
    if first is not None:
        conditions.append(Contract.signed_on >= first)
    if last is not None:
        conditions.append(Contract.signed_on <= last)
    # Plan: the licenses in the report (with a contract signed in the range, when there is one).
    holders = select(License.id, License.modules, License.product_id).where(
        License.status != "pending_approval"
    )
    if conditions:
        holders = holders.join(Contract, Contract.id == License.contract_id).where(*conditions)
    h = holders.subquery()
    hm = _elements(session, h.c.modules)
    plan_rows = session.execute(
        select(
            hm.c.value,
            ProductModule.currency,
            func.count(),
            func.sum(ProductModule.list_price_minor),
        )
        .select_from(h)
        .join(hm, true())
        .outerjoin(
            ProductModule,
            and_(ProductModule.product_id == h.c.product_id, ProductModule.code == hm.c.value),
        )
        .group_by(hm.c.value, ProductModule.currency)
    ).all()
    # Fact: each license's share of its contract, split evenly over its modules (the remainder
    # one unit each to the first modules by code, so the parts add up exactly).
    shares = contract_shares(*conditions)
    sm = _elements(session, shares.c.modules)
    k = func.count().over(partition_by=shares.c.license_id)
    q = func.row_number().over(partition_by=shares.c.license_id, order_by=sm.c.value) - 1
    parts = (
        select(
            sm.c.value.label("module"),
            shares.c.currency.label("currency"),
            shares.c.share.label("share"),
            k.label("k"),
            q.label("q"),
        )
        .select_from(shares)
        .join(sm, true())
        .subquery()
    )
    part = parts.c.share // parts.c.k + case((parts.c.q < parts.c.share % parts.c.k, 1), else_=0)
    fact_rows = session.execute(
        select(parts.c.module, parts.c.currency, func.sum(part)).group_by(
            parts.c.module, parts.c.currency
        )
    ).all()
    table: dict[tuple[str, str], list[int]] = {}
    for module, currency, licenses, plan in plan_rows:
        entry = table.setdefault((module, currency or ""), [0, 0, 0])
        entry[0] += int(licenses)
        entry[1] += int(plan or 0)
    for module, currency, fact in fact_rows:
        table.setdefault((module, currency or ""), [0, 0, 0])[2] += int(fact or 0)
    rows: list[tuple[Cell, ...]] = [
        (module, currency, licenses, plan, fact)
        for (module, currency), (licenses, plan, fact) in sorted(table.items())
    ]
    return Report(
        "sales-by-module",
        ("module", "currency", "licenses", "plan_minor", "fact_minor"),
        rows,
    )
