"""Plans and prices: the operator's catalogue (create, change, retire), every change audited.

A plan carries what ``/license`` serves (quota, devices, features) and what billing charges:
``price_minor`` of ``currency`` per ``interval``, ``trial_days``, and ``rank``, the tier that
states the direction of a plan change (higher: upgrade) instead of inferring it from a daily
price (Lago #1834 calls annual → monthly an upgrade). A retired plan is offered no more; its
subscribers keep it. A change of price applies to new subscriptions: an existing subscriber keeps
the price subscribed to until changing plan (as Stripe's prices are immutable).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, fields
from typing import Any

from sqlalchemy import select

from agent.protocol import CURRENCY_PATTERN, PLAN_NAME_PATTERN

from ...db import transaction
from ...errors import AlreadyExists, NotFound, ValidationFailed
from ...models import Plan
from ..audit import record
from ..context import ServiceContext
from .contract import Interval

#: The most a plan may cost per interval (minor units): far above any real price, far below
#: what an integer column or a provider can hold.
MAX_PRICE_MINOR = 10**11
#: The most messages a plan may grant a month: far above any real plan, and within the 32-bit
#: columns that count quota (plans, usage periods) on every database.
MAX_MONTHLY_QUOTA = 10**9
MAX_TRIAL_DAYS = 730


def plan_object(name: str) -> str:
    """The audit log's object path of a plan."""
    return f"billing/plan/{name}"


#: The most messages one point may buy (keeps a top-up's messages within the period's counter).
MAX_TOPUP_RATE = 10_000


@dataclass(frozen=True)
class PlanSpec:
    name: str
    monthly_quota: int
    max_devices: int
    features: tuple[str, ...] = ()
    price_minor: int = 0
    currency: str = "RUB"
    interval: Interval = Interval.MONTH
    trial_days: int = 0
    rank: int = 0
    #: Extra messages one point buys (``POST /usage/topup``); 0: none are sold.
    topup_messages_per_point: int = 0


@dataclass(frozen=True)
class PlanChanges:
    """What to change of a plan; ``None``: keep. The name is the plan's identity: it stays."""

    monthly_quota: int | None = None
    max_devices: int | None = None
    features: tuple[str, ...] | None = None
    price_minor: int | None = None
    currency: str | None = None
    interval: Interval | None = None
    trial_days: int | None = None
    rank: int | None = None
    topup_messages_per_point: int | None = None

    def given(self) -> dict[str, Any]:
        return {
            f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None
        }


def _check(values: dict[str, Any]) -> None:
    """The rules no schema column states alone; one message per broken rule."""
    problems = []
    if "name" in values and not re.fullmatch(PLAN_NAME_PATTERN, values["name"]):
        problems.append("a plan's name is 1-64 of letters, digits, '_', '.', '-'")
    if not 0 <= values.get("monthly_quota", 0) <= MAX_MONTHLY_QUOTA:
        problems.append(f"the quota is 0 to {MAX_MONTHLY_QUOTA} messages a month")
    if values.get("max_devices", 1) < 1:
        problems.append("a plan allows at least one device")
    if not 0 <= values.get("price_minor", 0) <= MAX_PRICE_MINOR:
        problems.append(f"the price is 0 to {MAX_PRICE_MINOR} minor units")
    if "currency" in values and not re.fullmatch(CURRENCY_PATTERN, values["currency"]):
        problems.append("the currency is an ISO 4217 code (three capital letters)")
    if not 0 <= values.get("trial_days", 0) <= MAX_TRIAL_DAYS:
        problems.append(f"a trial lasts 0 to {MAX_TRIAL_DAYS} days")
    if not 0 <= values.get("topup_messages_per_point", 0) <= MAX_TOPUP_RATE:
        problems.append(f"one point buys 0 to {MAX_TOPUP_RATE} messages")
    if problems:
        raise ValidationFailed("; ".join(problems))


def _details(plan: Plan) -> dict[str, Any]:
    return {
        "monthly_quota": plan.monthly_quota,
        "max_devices": plan.max_devices,
        "features": list(plan.features),
        "price_minor": plan.price_minor,
        "currency": plan.currency,
        "interval": plan.interval,
        "trial_days": plan.trial_days,
        "rank": plan.rank,
        "topup_messages_per_point": plan.topup_messages_per_point,
    }


class BillingPlans:
    def __init__(self, ctx: ServiceContext) -> None:
        self._ctx = ctx

    def create(self, actor: str, spec: PlanSpec) -> Plan:
        values = asdict(spec)
        _check(values)
        now = self._ctx.clock.now()
        with transaction(self._ctx.write) as session:
            if session.scalar(select(Plan.id).where(Plan.name == spec.name)) is not None:
                raise AlreadyExists(f"a plan named {spec.name!r} already exists")
            plan = Plan(
                **{
                    **values,
                    "features": sorted(set(spec.features)),
                    "interval": spec.interval.value,
                },
                created_at=now,
            )
            session.add(plan)
            record(
                session, now, actor, "billing.plan.create", plan_object(spec.name), _details(plan)
            )
            return plan

    def change(self, actor: str, name: str, changes: PlanChanges) -> Plan:
        values = changes.given()
        _check(values)
        now = self._ctx.clock.now()
        with transaction(self._ctx.write) as session:
            plan = self._find(session, name, lock=True)
            before = _details(plan)
            for key, value in values.items():
                if key == "features":
                    value = sorted(set(value))
                elif key == "interval":
                    value = Interval(value).value
                setattr(plan, key, value)
            after = _details(plan)
            changed = {
                k: {"from": before[k], "to": after[k]} for k in after if before[k] != after[k]
            }
            if changed:  # a change that changes nothing is not recorded
                record(session, now, actor, "billing.plan.change", plan_object(name), changed)
            return plan

    def retire(self, actor: str, name: str) -> Plan:
        """Offer the plan no more (its subscribers keep it); retiring it again changes nothing."""
        now = self._ctx.clock.now()
        with transaction(self._ctx.write) as session:
            plan = self._find(session, name, lock=True)
            if plan.retired_at is None:
                plan.retired_at = now
                record(session, now, actor, "billing.plan.retire", plan_object(name), {})
            return plan

    def get(self, name: str) -> Plan:
        with transaction(self._ctx.read) as session:
            return self._find(session, name, lock=False)

    def list(self, *, offered_only: bool = False) -> list[Plan]:
        """Every plan by rank then price (``offered_only``: the ones not retired)."""
        query = select(Plan).order_by(Plan.rank, Plan.price_minor, Plan.name)
        if offered_only:
            query = query.where(Plan.retired_at.is_(None))
        with transaction(self._ctx.read) as session:
            return list(session.scalars(query))

    @staticmethod
    def _find(session: Any, name: str, *, lock: bool) -> Plan:
        query = select(Plan).where(Plan.name == name)
        plan = session.scalar(query.with_for_update() if lock else query)
        if plan is None:
            raise NotFound(f"no plan named {name!r}")
        assert isinstance(plan, Plan)
        return plan
