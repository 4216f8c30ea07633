"""Plans: the operator's catalogue of quotas, device limits and features."""

from __future__ import annotations

from sqlalchemy import select

from ..db import transaction
from ..errors import AlreadyExists, ValidationFailed
from ..models import Plan
from .context import ServiceContext


class PlanService:
    def __init__(self, ctx: ServiceContext) -> None:
        self._ctx = ctx

    def create(self, name: str, monthly_quota: int, max_devices: int, features: list[str]) -> Plan:
        if monthly_quota < 0 or max_devices < 1 or not name.strip():
            raise ValidationFailed("a plan needs a name, a quota ≥ 0 and at least one device")
        with transaction(self._ctx.write) as session:
            if session.scalar(select(Plan.id).where(Plan.name == name)) is not None:
                raise AlreadyExists(f"a plan named {name!r} already exists")
            plan = Plan(
                name=name,
                monthly_quota=monthly_quota,
                max_devices=max_devices,
                features=sorted(set(features)),
                created_at=self._ctx.clock.now(),
            )
            session.add(plan)
            return plan

    def upsert(self, name: str, monthly_quota: int, max_devices: int, features: list[str]) -> Plan:
        with transaction(self._ctx.write) as session:
            plan = session.scalar(select(Plan).where(Plan.name == name))
            if plan is None:
                plan = Plan(name=name, created_at=self._ctx.clock.now())
                session.add(plan)
            plan.monthly_quota = monthly_quota
            plan.max_devices = max_devices
            plan.features = sorted(set(features))
            return plan

    def list(self) -> list[Plan]:
        with transaction(self._ctx.read) as session:
            return list(session.scalars(select(Plan).order_by(Plan.name)))
