"""Licenses of apps held by backends: the trial (once per app and backend), paid plans
(pending until the operator activates them), renewal, grace and revocation."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from agent.protocol import MarketplacePlan

from ...db import transaction
from ...errors import (
    AlreadyExists,
    IdempotencyConflict,
    LicenseInactive,
    NotFound,
    ValidationFailed,
)
from ..context import ServiceContext
from .audit import OPERATOR, audit, backend_actor, license_record
from .periods import next_period_end
from .rows import find_license, lock_backend, new_license
from .specs import price
from .state import LicenseView, Plan, Status, license_state, license_view
from .transitions import locked_app_license, settle


@dataclass(frozen=True)
class LicenseChange:
    license: LicenseView
    #: False when the request asked for what the license already was (an idempotent repeat).
    changed: bool


class Licenses:
    def __init__(self, ctx: ServiceContext) -> None:
        self._ctx = ctx

    @property
    def _trial(self) -> timedelta:
        return timedelta(days=self._ctx.settings.marketplace_trial_days)

    @property
    def _grace(self) -> timedelta:
        return timedelta(days=self._ctx.settings.marketplace_grace_days)

    def request_license(self, backend_id: str, app_id: str, plan: MarketplacePlan) -> LicenseChange:
        """Start the trial, or order a paid plan (``pending`` until the operator activates it).

        A plan priced 0 is free: its license is ``active`` at once and never lapses.
        """
        plan = Plan(plan)
        now = self._ctx.clock.now()
        with transaction(self._ctx.write) as session:
            app, lic, state = locked_app_license(session, backend_id, app_id, now)
            if lic is not None and state == Status.REVOKED:
                raise LicenseInactive("the operator revoked this license; only they can restore it")
            before = license_record(lic) if lic is not None else None
            if plan == Plan.TRIAL:
                if lic is not None and state == Status.TRIAL:  # a repeat while it runs
                    return LicenseChange(license_view(lic, now), changed=False)
                if lic is not None and lic.trial_ends_at is not None:
                    raise IdempotencyConflict("this backend has had its trial of this app")
                if state in (Status.ACTIVE, Status.GRACE):
                    raise AlreadyExists("this backend holds a paid license of this app")
                lic = lic or new_license(session, backend_id, app_id, now)
                trial_end = now + self._trial
                lic.trial_ends_at = trial_end
                if state != Status.PENDING:  # a pending order stays; the trial runs meanwhile
                    lic.plan = Plan.TRIAL.value
                    lic.started_at, lic.expires_at = now, trial_end
                    lic.paid_at = lic.grace_until = lic.period_anchor = None
            else:
                if price(app, plan) is None:
                    raise ValidationFailed(f"the app {app_id!r} is not offered on the {plan} plan")
                if lic is not None and lic.plan == plan and state != Status.DISABLED:
                    return LicenseChange(license_view(lic, now), changed=False)
                if state in (Status.ACTIVE, Status.GRACE):
                    raise AlreadyExists(
                        "this backend holds a paid license of this app; the operator changes plans"
                    )
                lic = lic or new_license(session, backend_id, app_id, now)
                lic.plan = plan.value
                lic.paid_at = lic.started_at = lic.expires_at = lic.grace_until = None
                lic.period_anchor = None
                if price(app, plan) == 0:
                    # Free: nothing to pay, so nothing to wait for and nothing to renew. The
                    # license is active at once and, whatever the plan, does not lapse.
                    lic.paid_at = lic.started_at = now
            lic.status = license_state(lic, now).value
            lic.updated_at = now
            audit(
                session,
                now,
                backend_actor(backend_id),
                "license.request",
                backend_id=backend_id,
                app_id=app_id,
                before=before,
                after=license_record(lic),
            )
            return LicenseChange(license_view(lic, now), changed=True)

    def activate_license(
        self, backend_id: str, app_id: str, *, until: datetime | None = None
    ) -> LicenseView:
        """Mark a paid license paid (operator): active for its period, or until ``until``.

        A license still active or in grace is renewed from the end of its period, so paying
        late neither loses nor gains days, and keeps its periods' anchor (the new end is the
        anchor's next boundary, so month ends do not drift: :mod:`.periods`); otherwise the
        period starts now, and so does a new anchor. ``until`` ends this period there and makes
        it the anchor: the next renewal runs a whole period from it. Activation also lifts a
        revocation.
        """
        now = self._ctx.clock.now()
        with transaction(self._ctx.write) as session:
            lock_backend(session, backend_id)
            lic = find_license(session, backend_id, app_id)
            if lic is None:
                raise NotFound(f"backend {backend_id} has not requested a license of {app_id!r}")
            state = settle(session, lic, now)
            if lic.plan == Plan.TRIAL:
                raise ValidationFailed(
                    "this license is a trial; the backend must order a paid plan first"
                )
            plan = Plan(lic.plan)
            if plan == Plan.PERPETUAL and until is not None:
                raise ValidationFailed("a perpetual license does not expire; drop --until")
            if until is not None and until <= now:
                raise ValidationFailed("--until must be in the future")
            if state == Status.ACTIVE and lic.expires_at is None and until is None:
                return license_view(lic, now)  # perpetual or free: it never ends, nothing to extend
            before = license_record(lic)
            renewal = state in (Status.ACTIVE, Status.GRACE) and lic.expires_at is not None
            start = lic.expires_at if renewal and lic.expires_at is not None else now
            if plan == Plan.PERPETUAL:
                lic.expires_at = lic.grace_until = lic.period_anchor = None
            else:
                if until is not None:
                    # The operator's end is a boundary the series restarts from: anchoring it
                    # keeps "the end is boundary n of the anchor" true (periods.py relies on it).
                    lic.period_anchor = lic.expires_at = until.astimezone(UTC)
                else:
                    lic.period_anchor, lic.expires_at = next_period_end(
                        lic, plan, start, renewal=renewal
                    )
                lic.grace_until = lic.expires_at + self._grace
            lic.started_at = start
            lic.paid_at = now
            lic.revoked_at = None
            lic.status = license_state(lic, now).value
            lic.updated_at = now
            audit(
                session,
                now,
                OPERATOR,
                "license.activate",
                backend_id=backend_id,
                app_id=app_id,
                before=before,
                after=license_record(lic),
            )
            return license_view(lic, now)

    def revoke_license(self, backend_id: str, app_id: str) -> LicenseView:
        """Withdraw a license now (operator); the app leaves ``installed`` and the snapshot."""
        now = self._ctx.clock.now()
        with transaction(self._ctx.write) as session:
            lock_backend(session, backend_id)
            lic = find_license(session, backend_id, app_id)
            if lic is None:
                raise NotFound(f"backend {backend_id} holds no license of {app_id!r}")
            settle(session, lic, now)
            if lic.revoked_at is None:
                before = license_record(lic)
                lic.revoked_at = now
                lic.status = Status.REVOKED.value
                lic.updated_at = now
                audit(
                    session,
                    now,
                    OPERATOR,
                    "license.revoke",
                    backend_id=backend_id,
                    app_id=app_id,
                    before=before,
                    after=license_record(lic),
                )
            return license_view(lic, now)
