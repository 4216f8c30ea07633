"""The license view: plan, quota, device binding, features and the signed offline lease."""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, and_, bindparam, func, select

from agent.protocol import KEY_PURPOSE_AUTH, LicenseStatus

from ..db import read_connection, transaction
from ..models import Device, Plan, Subscription, UsagePeriod
from ..tokens import fingerprint_hash
from .auth import DEVICES_WITHOUT_PLAN, Principal
from .context import ServiceContext
from .periods import active_plan, current_period, entitled, is_anchored_period
from .reservations import expired_hold_exists, release_expired_holds

#: A cached lease is signed again once this share of its lifetime has passed.
_LEASE_REFRESH_FRACTION = 0.01
_LEASE_CACHE_SIZE = 4096

_devices = cast(Table, Device.__table__)
_periods = cast(Table, UsagePeriod.__table__)
_plans = cast(Table, Plan.__table__)
_subscriptions = cast(Table, Subscription.__table__)

_COUNT_DEVICES = (
    select(func.count())
    .select_from(_devices)
    .where(_devices.c.user_id == bindparam("user_id"), _devices.c.revoked_at.is_(None))
)
#: The whole view in one statement: plan, the period that contains ``now``, the device count,
#: and whether an expired hold must be released first.
_LICENSE_ROW = (
    select(
        _plans.c.name,
        _plans.c.features,
        _plans.c.max_devices,
        _subscriptions.c.period_anchor,
        _periods.c.id.label("period_id"),
        _periods.c.period_start,
        _periods.c.period_end,
        _periods.c.quota_limit,
        _periods.c.used,
        _periods.c.held,
        expired_hold_exists(_periods.c.id).label("stale"),
        _COUNT_DEVICES.scalar_subquery().label("devices_used"),
    )
    .select_from(_subscriptions)
    .join(_plans, _plans.c.id == _subscriptions.c.plan_id)
    .outerjoin(
        _periods,
        and_(
            _periods.c.user_id == _subscriptions.c.user_id,
            _periods.c.period_start <= bindparam("now"),
            _periods.c.period_end > bindparam("now"),
        ),
    )
    .where(_subscriptions.c.user_id == bindparam("user_id"), entitled(_subscriptions))
)


@dataclass(frozen=True)
class LicenseView:
    plan: str | None
    status: LicenseStatus
    limit: int
    used: int
    held: int
    remaining: int
    period_end: datetime | None
    fingerprint: str
    devices_used: int
    devices_max: int
    features: list[str]
    lease: str
    lease_expires_at: datetime


class LicenseService:
    def __init__(self, ctx: ServiceContext) -> None:
        self._ctx = ctx
        # The lease carries only slow-changing facts (plan, limit, period, device), so one
        # signature serves many /license calls; RSA signing is the costly part of the request.
        self._leases: OrderedDict[tuple[Any, ...], tuple[str, datetime, datetime]] = OrderedDict()
        self._lock = threading.Lock()

    def view(self, principal: Principal) -> LicenseView:
        now = self._ctx.clock.now()
        user_id = principal.user.id
        params = {"user_id": user_id, "now": now}
        # One read; a write only when this is the period's first request or a hold has expired:
        # /license is called far more often than anything changes.
        with read_connection(self._ctx.read) as conn:
            row = conn.execute(_LICENSE_ROW, params).first()
        if row is not None and (
            row.period_id is None
            or row.stale
            or not is_anchored_period(row.period_anchor, row.period_start, row.period_end)
        ):
            with transaction(self._ctx.write) as session:
                active = active_plan(session, user_id, now)
                if active is not None:
                    period = current_period(session, active, now, lock=True)
                    release_expired_holds(session, period, now)
            with read_connection(self._ctx.read) as conn:
                row = conn.execute(_LICENSE_ROW, params).first()
        if row is not None:
            devices_used, devices_max = row.devices_used, row.max_devices
            limit, used, held = row.quota_limit, row.used, row.held
            left, period_end = max(limit - used - held, 0), row.period_end
            plan, features = row.name, sorted(row.features)
            status = LicenseStatus.ACTIVE
        else:
            with read_connection(self._ctx.read) as conn:
                devices_used = conn.execute(_COUNT_DEVICES, params).scalar_one()
            devices_max = DEVICES_WITHOUT_PLAN
            limit = used = held = left = 0
            period_end, plan, features = None, None, []
            status = LicenseStatus.INACTIVE
        device = fingerprint_hash(principal.device.fingerprint)
        claims = {
            "sub": user_id,
            "plan": plan,
            "status": status.value,
            "quota": {
                "limit": limit,
                "period_end": int(period_end.timestamp()) if period_end else None,
            },
            "features": features,
            "device": device,
        }
        lease, lease_exp = self._lease(claims, now)
        return LicenseView(
            plan=plan,
            status=status,
            limit=limit,
            used=used,
            held=held,
            remaining=left,
            period_end=period_end,
            fingerprint=device,
            devices_used=devices_used,
            devices_max=devices_max,
            features=features,
            lease=lease,
            lease_expires_at=lease_exp,
        )

    def _lease(self, claims: dict[str, Any], now: datetime) -> tuple[str, datetime]:
        ttl = timedelta(seconds=self._ctx.settings.lease_ttl_seconds)
        signer = self._ctx.keys.signing_key(KEY_PURPOSE_AUTH).kid
        cache_key = (signer, repr(sorted(claims.items())))
        with self._lock:
            cached = self._leases.get(cache_key)
            if cached and now - cached[1] < ttl * _LEASE_REFRESH_FRACTION and now >= cached[1]:
                self._leases.move_to_end(cache_key)
                return cached[0], cached[2]
        lease = self._ctx.tokens.issue_lease(claims, now=now, ttl=ttl)
        expires = datetime.fromtimestamp(int((now + ttl).timestamp()), tz=now.tzinfo)
        with self._lock:
            self._leases[cache_key] = (lease, now, expires)
            while len(self._leases) > _LEASE_CACHE_SIZE:
                self._leases.popitem(last=False)
        return lease, expires
