"""The license view: plan, quota, device binding, features and the signed offline lease."""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from agent.protocol import KEY_PURPOSE_AUTH, LicenseStatus

from ..db import transaction
from ..tokens import fingerprint_hash
from .auth import DEVICES_WITHOUT_PLAN, Principal, count_devices
from .context import ServiceContext
from .periods import active_plan, current_period, find_period, remaining
from .reservations import has_expired_holds, release_expired_holds

#: A cached lease is signed again once this share of its lifetime has passed.
_LEASE_REFRESH_FRACTION = 0.01
_LEASE_CACHE_SIZE = 4096


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
        # Read-only unless this is the period's first request or a hold has expired: /license
        # is called far more often than anything changes.
        with transaction(self._ctx.read) as session:
            active = active_plan(session, user_id)
            devices_used = count_devices(session, user_id)
            period = find_period(session, active, now) if active else None
            stale = period is None or has_expired_holds(session, period, now)
        if active is not None and stale:
            with transaction(self._ctx.write) as session:
                period = current_period(session, active, now, lock=True)
                release_expired_holds(session, period, now)
        devices_max = active.plan.max_devices if active else DEVICES_WITHOUT_PLAN
        if active is not None and period is not None:
            limit, used, held = period.quota_limit, period.used, period.held
            left, period_end = remaining(period), period.period_end
            plan, features = active.plan.name, sorted(active.plan.features)
            status = LicenseStatus.ACTIVE
        else:
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
