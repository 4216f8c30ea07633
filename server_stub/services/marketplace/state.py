"""A license's state, computed from its plan, its dates and the clock (never its ``status``).

The ``status`` column keeps the state last written; :mod:`.transitions` writes the difference
whenever the clock has moved the computed state on.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from agent.protocol import USABLE_LICENSE_STATUSES, MarketplaceLicenseStatus, MarketplacePlan

from ...models import BackendLicense

Status = MarketplaceLicenseStatus
Plan = MarketplacePlan


def license_state(lic: BackendLicense, now: datetime) -> MarketplaceLicenseStatus:
    """The state of a license at ``now``, from its plan and dates alone (never its ``status``)."""
    if lic.revoked_at is not None:
        return Status.REVOKED
    trial_runs = lic.trial_ends_at is not None and now < lic.trial_ends_at
    if lic.plan == Plan.TRIAL:
        return Status.TRIAL if trial_runs else Status.EXPIRED
    if lic.paid_at is None:
        # A paid plan ordered during the trial does not cut the trial short.
        return Status.TRIAL if trial_runs else Status.PENDING
    if lic.expires_at is None or now < lic.expires_at:
        return Status.ACTIVE
    if lic.grace_until is not None and now < lic.grace_until:
        return Status.GRACE
    return Status.DISABLED


@dataclass(frozen=True)
class LicenseView:
    app_id: str
    plan: MarketplacePlan
    status: MarketplaceLicenseStatus
    started_at: datetime | None
    expires_at: datetime | None
    grace_until: datetime | None
    trial_ends_at: datetime | None

    @property
    def usable(self) -> bool:
        return self.status in USABLE_LICENSE_STATUSES


def license_view(lic: BackendLicense, now: datetime) -> LicenseView:
    return LicenseView(
        app_id=lic.app_id,
        plan=Plan(lic.plan),
        status=license_state(lic, now),
        started_at=lic.started_at,
        expires_at=lic.expires_at,
        grace_until=lic.grace_until,
        trial_ends_at=lic.trial_ends_at,
    )
