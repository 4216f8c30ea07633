"""The marketplace's audit trail: who changed what, with the record before and after.

The entries live in the backend's one audit log (:mod:`..audit`), under the object path
``marketplace[/backend/<id>][/app/<id>]`` with ``details`` ``{before, after}``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from ...db import transaction
from ...models import AuditEntry, BackendLicense, Installation, MarketplaceApp
from ..audit import escape_like, object_under, record
from ..context import ServiceContext

#: Audit actors besides ``backend:<id>``.
OPERATOR = "operator"
CLOCK = "clock"


def backend_actor(backend_id: str) -> str:
    return f"backend:{backend_id}"


def marketplace_object(backend_id: str | None, app_id: str | None) -> str:
    """The audit object path of a marketplace change (migration 0006 keeps a frozen copy)."""
    path = "marketplace"
    if backend_id is not None:
        path += f"/backend/{backend_id}"
    if app_id is not None:
        path += f"/app/{app_id}"
    return path


@dataclass(frozen=True)
class MarketplaceAuditRow:
    """A marketplace entry of the audit log, in the marketplace's terms."""

    seq: int
    at: datetime
    actor: str
    action: str
    backend_id: str | None
    app_id: str | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None

    @classmethod
    def of(cls, entry: AuditEntry) -> MarketplaceAuditRow:
        parts = entry.object.split("/")
        named = dict(zip(parts[1::2], parts[2::2], strict=False))
        details = entry.details or {}
        return cls(
            seq=entry.seq,
            at=entry.at,
            actor=entry.actor,
            action=entry.action,
            backend_id=named.get("backend"),
            app_id=named.get("app"),
            before=details.get("before"),
            after=details.get("after"),
        )


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
        "period_anchor": _iso(lic.period_anchor),
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
    """Record an audit entry in ``session``: it commits, or rolls back, with the change."""
    record(
        session,
        now,
        actor,
        action,
        marketplace_object(backend_id, app_id),
        {"before": before, "after": after},
    )


class AuditTrail:
    def __init__(self, ctx: ServiceContext) -> None:
        self._ctx = ctx

    def audit_trail(
        self, *, backend_id: str | None = None, app_id: str | None = None
    ) -> list[MarketplaceAuditRow]:
        """The marketplace's entries, oldest first, of a backend, an app, or both."""
        query = select(AuditEntry).order_by(AuditEntry.seq)
        obj = AuditEntry.object
        if backend_id is not None and app_id is not None:
            query = query.where(obj == marketplace_object(backend_id, app_id))
        elif backend_id is not None:
            query = query.where(object_under(obj, marketplace_object(backend_id, None)))
        elif app_id is not None:
            query = query.where(
                or_(
                    obj == marketplace_object(None, app_id),
                    obj.like("marketplace/backend/%/app/" + escape_like(app_id), escape="\\"),
                )
            )
        else:
            query = query.where(object_under(obj, "marketplace"))
        with transaction(self._ctx.read) as session:
            return [MarketplaceAuditRow.of(entry) for entry in session.scalars(query)]
