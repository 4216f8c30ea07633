"""The clock's transitions: a trial ends, a paid period lapses into grace and grace into
``disabled`` at the exact second, with or without a sweeper.

Whenever a license's ``status`` column differs from its computed state (:func:`license_state`),
the change is written (with an audit row whose actor is ``clock``) by the next request that
touches the license, or by the periodic sweeper, whichever comes first.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from agent.protocol import MarketplaceLicenseStatus

from ...db import transaction
from ...errors import NotFound
from ...models import BackendLicense, MarketplaceApp
from ..context import ServiceContext
from .audit import CLOCK, audit, license_record
from .rows import find_license, lock_backend
from .state import Status, license_state


def settle(session: Session, lic: BackendLicense, now: datetime) -> MarketplaceLicenseStatus:
    """Write (and audit) the state the clock has moved ``lic`` to; returns that state."""
    state = license_state(lic, now)
    if lic.status != state:
        before = license_record(lic)
        lic.status = state.value
        lic.updated_at = now
        audit(
            session,
            now,
            CLOCK,
            "license.transition",
            backend_id=lic.backend_id,
            app_id=lic.app_id,
            before=before,
            after=license_record(lic),
        )
    return state


def locked_app_license(
    session: Session, backend_id: str, app_id: str, now: datetime
) -> tuple[MarketplaceApp, BackendLicense | None, MarketplaceLicenseStatus | None]:
    """Under the backend's lock: the listed app, and the backend's license of it (with its
    state, settled to ``now``) if it holds one."""
    lock_backend(session, backend_id)
    app = session.get(MarketplaceApp, app_id)
    if app is None:
        raise NotFound(f"no app {app_id!r} in the catalog")
    lic = find_license(session, backend_id, app_id)
    return app, lic, settle(session, lic, now) if lic is not None else None


class Transitions:
    def __init__(self, ctx: ServiceContext) -> None:
        self._ctx = ctx

    def settle_due(self) -> int:
        """Write (and audit) every state change the clock has made since it was last written.

        The periodic sweeper calls this; reads do the same for the licenses they look at.
        Returns how many licenses changed.
        """
        now = self._ctx.clock.now()
        with transaction(self._ctx.read) as session:
            due = list(
                session.scalars(
                    select(BackendLicense).where(
                        or_(
                            and_(
                                BackendLicense.status == Status.TRIAL.value,
                                BackendLicense.trial_ends_at <= now,
                            ),
                            and_(
                                BackendLicense.status == Status.ACTIVE.value,
                                BackendLicense.expires_at <= now,
                            ),
                            and_(
                                BackendLicense.status == Status.GRACE.value,
                                BackendLicense.grace_until <= now,
                            ),
                        )
                    )
                )
            )
        return self.settle_stale(due, now)

    def settle_stale(self, licenses: Iterable[BackendLicense], now: datetime) -> int:
        """Settle, each under its backend's lock, those of ``licenses`` the clock has moved on."""
        stale = [lic for lic in licenses if lic.status != license_state(lic, now)]
        changed = 0
        for lic in stale:
            with transaction(self._ctx.write) as session:
                lock_backend(session, lic.backend_id)
                current = find_license(session, lic.backend_id, lic.app_id)
                if current is not None and current.status != license_state(current, now):
                    settle(session, current, now)
                    changed += 1
        return changed
