"""Suspending (reversible), resuming and revoking (final) a license.

A revocation closes any pending request, re-signs the public revocation list and enqueues the
``revoked`` notification, all in the transaction that revokes.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from ...db import transaction
from ...errors import LicenseInactive
from ...portal_models import License
from ...signing import Signer
from .. import notifications, revocations
from ..audit import record
from ..context import ServiceContext
from .common import (
    LicenseView,
    find_license,
    license_object,
    pending_version,
    refuse_if_revoked,
    version_details,
    version_row,
    view,
)


class LicenseStates:
    def __init__(self, ctx: ServiceContext, signer: Signer) -> None:
        self._ctx = ctx
        self._signer = signer

    def _audit(self, session: Session, lic: License, actor: str, action: str, reason: str) -> None:
        record(
            session,
            self._ctx.clock.now(),
            actor,
            action,
            license_object(lic.id),
            {
                **version_details(version_row(session, lic.id, lic.version)),
                "status": lic.status,
                "reason": reason,
            },
        )

    def _move(self, actor: str, ref: str, reason: str, source: str, target: str) -> LicenseView:
        """``source`` → ``target`` (suspend: active → suspended, resume: the reverse)."""
        now = self._ctx.clock.now()
        action, done = ("suspend", "suspended") if target == "suspended" else ("resume", "resumed")
        with transaction(self._ctx.write) as session:
            lic = find_license(session, ref, lock=True)
            refuse_if_revoked(lic, done)
            if lic.status != source:
                raise LicenseInactive(
                    f"only a license that is {source} can be {done} (it is {lic.status})"
                )
            lic.status = target
            lic.suspended_at = now if target == "suspended" else None
            lic.status_reason = reason
            lic.updated_at = now
            self._audit(session, lic, actor, f"license.{action}", reason)
            return view(session, lic)

    def suspend(self, actor: str, ref: str, reason: str) -> LicenseView:
        """Reversible: the license stops working online until it is resumed."""
        return self._move(actor, ref, reason, "active", "suspended")

    def resume(self, actor: str, ref: str, reason: str) -> LicenseView:
        return self._move(actor, ref, reason, "suspended", "active")

    def revoke(self, actor: str, ref: str, reason: str) -> LicenseView:
        """Revoke for good; revoking a revoked license changes nothing (a retried call)."""
        now = self._ctx.clock.now()
        issuer = self._ctx.settings.issuer
        with transaction(self._ctx.write) as session:
            lic = find_license(session, ref, lock=True)
            if lic.status == "revoked":
                return view(session, lic)
            waiting = pending_version(session, lic.id)
            if waiting is not None:
                waiting.rejected_by = actor
                waiting.rejected_at = now
                waiting.rejection_reason = "the license was revoked"
            lic.status = "revoked"
            lic.revoked_at = now
            lic.status_reason = reason
            lic.updated_at = now
            revocations.publish(session, self._signer, issuer=issuer, now=now)
            notifications.enqueue(
                session,
                kind="revoked",
                license_id=lic.id,
                dedupe=lic.id,
                # The key is a secret of the customer's (it opens encrypted files): its tail only.
                payload={
                    "license_id": lic.id,
                    "license_key_tail": lic.license_key[-4:],
                    "client_id": lic.client_id,
                    "reason": reason,
                },
                now=now,
            )
            self._audit(session, lic, actor, "license.revoke", reason)
            return view(session, lic)
