"""The optional four-eyes rule (issue #11 item 3): which license versions wait for a second
person, an Admin other than the requester, before they are signed.

Kept in ``portal_settings`` under :data:`SETTING_KEY`; an Admin reads and sets it
(``settings.manage``). Off until set.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from sqlalchemy.orm import Session

from ...db import transaction
from ...portal_models import LICENSE_PLANS, PortalSetting
from ..audit import record
from ..context import ServiceContext

SETTING_KEY: Final = "four_eyes"


@dataclass(frozen=True)
class FourEyesRule:
    """``enabled``; then a version needs approval when its plan is in ``plans`` or its amount is
    at least the threshold of its currency (``amount_thresholds``, minor units)."""

    enabled: bool = False
    plans: tuple[str, ...] = ()
    amount_thresholds: Mapping[str, int] = field(default_factory=dict)

    def applies(self, plan: str, amount_minor: int | None, currency: str | None) -> bool:
        if not self.enabled:
            return False
        if plan in self.plans:
            return True
        threshold = self.amount_thresholds.get(currency or "")
        return threshold is not None and amount_minor is not None and amount_minor >= threshold

    def to_json(self) -> dict[str, Any]:
        return {
            "enabled": self.enabled,
            "plans": list(self.plans),
            "amount_thresholds": dict(self.amount_thresholds),
        }

    @classmethod
    def from_json(cls, value: Any) -> FourEyesRule:
        if not isinstance(value, dict):
            return cls()
        plans = value.get("plans")
        thresholds = value.get("amount_thresholds")
        return cls(
            enabled=value.get("enabled") is True,
            plans=tuple(p for p in plans if p in LICENSE_PLANS) if isinstance(plans, list) else (),
            amount_thresholds={
                str(k): v
                for k, v in (thresholds.items() if isinstance(thresholds, dict) else ())
                if isinstance(v, int) and not isinstance(v, bool)
            },
        )


def read_rule(session: Session) -> tuple[FourEyesRule, PortalSetting | None]:
    row = session.get(PortalSetting, SETTING_KEY)
    return FourEyesRule.from_json(row.value if row is not None else None), row


def store_rule(session: Session, rule: FourEyesRule, actor: str, now: datetime) -> None:
    row = session.get(PortalSetting, SETTING_KEY, with_for_update=True)
    if row is None:
        session.add(
            PortalSetting(key=SETTING_KEY, value=rule.to_json(), updated_by=actor, updated_at=now)
        )
    else:
        row.value = rule.to_json()
        row.updated_by = actor
        row.updated_at = now


class FourEyesSettings:
    """Reading and setting the rule (Admin, ``settings.manage``), audited."""

    def __init__(self, ctx: ServiceContext) -> None:
        self._ctx = ctx

    def get(self) -> FourEyesRule:
        with transaction(self._ctx.read) as session:
            return read_rule(session)[0]

    def set(self, actor: str, rule: FourEyesRule) -> FourEyesRule:
        now = self._ctx.clock.now()
        with transaction(self._ctx.write) as session:
            before, _ = read_rule(session)
            store_rule(session, rule, actor, now)
            record(
                session,
                now,
                actor,
                "settings.four_eyes",
                f"settings/{SETTING_KEY}",
                {"before": before.to_json(), "after": rule.to_json()},
            )
        return rule
