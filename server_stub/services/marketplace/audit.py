"""The marketplace's audit trail: who changed what, with the record before and after."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from ...db import transaction
from ...models import BackendLicense, Installation, MarketplaceApp, MarketplaceAudit
from ..context import ServiceContext

#: Audit actors besides ``backend:<id>``.
OPERATOR = "operator"
CLOCK = "clock"


def backend_actor(backend_id: str) -> str:
    return f"backend:{backend_id}"


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def license_record(lic: BackendLicense) -> dict[str, object]:
    return {
        "plan": lic.plan,
        "status": lic.status,
        "started_at": _iso(lic.started_at),
        "expires_at": _iso(lic.expires_at),
        "grace_until": _iso(lic.grace_until),
        "trial_ends_at": _iso(lic.trial_ends_at),
        "paid_at": _iso(lic.paid_at),
        "revoked_at": _iso(lic.revoked_at),
    }


def installation_record(inst: Installation) -> dict[str, object]:
    return {"installed_at": _iso(inst.installed_at), "config": dict(inst.config)}


def app_record(app: MarketplaceApp) -> dict[str, object]:
    return {
        "name": app.name,
        "developer": app.developer,
        "prices": {
            "currency": app.currency,
            "monthly": app.price_monthly,
            "yearly": app.price_yearly,
            "perpetual": app.price_perpetual,
        },
        "artifact": {
            "url": app.artifact_url,
            "sha256": app.artifact_sha256,
            "size": app.artifact_size,
        },
        "iframe_url": app.iframe_url,
        "callback_url": app.callback_url,
        "permissions": list(app.permissions),
    }


def audit(
    session: Session,
    now: datetime,
    actor: str,
    action: str,
    *,
    backend_id: str | None = None,
    app_id: str | None = None,
    before: dict[str, object] | None = None,
    after: dict[str, object] | None = None,
) -> None:
    """Add an audit row to ``session``: it commits, or rolls back, with the change it records."""
    session.add(
        MarketplaceAudit(
            at=now,
            actor=actor,
            action=action,
            backend_id=backend_id,
            app_id=app_id,
            before=before,
            after=after,
        )
    )


class AuditTrail:
    def __init__(self, ctx: ServiceContext) -> None:
        self._ctx = ctx

    def audit_trail(
        self, *, backend_id: str | None = None, app_id: str | None = None
    ) -> list[MarketplaceAudit]:
        with transaction(self._ctx.read) as session:
            query = select(MarketplaceAudit).order_by(MarketplaceAudit.id)
            if backend_id is not None:
                query = query.where(MarketplaceAudit.backend_id == backend_id)
            if app_id is not None:
                query = query.where(MarketplaceAudit.app_id == app_id)
            return list(session.scalars(query))
