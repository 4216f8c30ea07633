"""The License panel's snapshot: from the server's answer, or offline from the stored lease."""

from __future__ import annotations

import logging

from agent.client import AsyncLicenseClient, License
from agent.errors import LicenseError, TamperDetected
from agent.protocol import DeviceList, LicenseStatus

from .catalog import N_, Reason
from .core_types import DeviceRow, LicenseSnapshot

log = logging.getLogger("tgflow.core")


def online_snapshot(email: str | None, lic: License, devices: DeviceList) -> LicenseSnapshot:
    """``GET /license`` and ``GET /devices`` as the panel shows them."""
    info = lic.info
    usable = info.status == LicenseStatus.ACTIVE and info.quota.remaining > 0
    reason: Reason | None = None
    if info.status != LicenseStatus.ACTIVE:
        reason = Reason(N_("license.reason.inactive"), {"status": str(info.status)})
    elif info.quota.remaining <= 0:
        reason = Reason(N_("license.reason.quota"))
    return LicenseSnapshot(
        email=email,
        plan=info.plan,
        status=str(info.status),
        usable=usable,
        reason=reason,
        limit=info.quota.limit,
        used=info.quota.used,
        held=info.quota.held,
        remaining=info.quota.remaining,
        period_end=info.quota.period_end,
        lease_expires_at=lic.lease.expires_at,
        devices=tuple(
            DeviceRow(d.id, d.name, d.created_at, d.last_seen_at) for d in devices.devices
        ),
        devices_max=devices.devices_max,
    )


def offline_snapshot(email: str | None, client: AsyncLicenseClient) -> LicenseSnapshot:
    """The stored lease's facts, never usable (sending needs the server)."""
    try:
        lease = client.offline_license()
    except TamperDetected as exc:
        log.warning("the offline lease cannot be trusted: %s", exc)
        return _unusable(email, Reason(N_("license.reason.clock_back")))
    except LicenseError as exc:
        log.warning("offline, and no valid offline lease: %s", exc)
        return _unusable(email, Reason(N_("license.reason.no_lease")))
    return LicenseSnapshot(
        email=email,
        plan=lease.plan,
        status=lease.status,
        # Sending needs the server (each batch is reserved there); offline shows facts only.
        usable=False,
        reason=Reason(N_("license.reason.offline")),
        limit=lease.quota_limit,
        used=0,
        held=0,
        remaining=0,
        period_end=lease.period_end,
        lease_expires_at=lease.expires_at,
        offline=True,
    )


def _unusable(email: str | None, reason: Reason) -> LicenseSnapshot:
    return LicenseSnapshot(
        email=email,
        plan=None,
        status="unknown",
        usable=False,
        reason=reason,
        limit=0,
        used=0,
        held=0,
        remaining=0,
        period_end=None,
        lease_expires_at=None,
        offline=True,
    )
