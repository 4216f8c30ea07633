"""Issuing a license and changing it (renew, upgrade, change): each a new version, signed at
once or, under the four-eyes rule, when an Admin other than the requester approves it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ...db import transaction
from ...errors import AlreadyExists, Forbidden, NotFound, ValidationFailed
from ...portal_models import Client, Contract, License, LicenseVersion, Product, ProductModule
from ...signing import Signer
from ..audit import record
from ..context import ServiceContext
from .common import (
    LicenseView,
    find_license,
    license_object,
    pending_version,
    refuse_if_revoked,
    version_details,
    view,
)
from .four_eyes import FourEyesRule, read_rule
from .signing import sign_version
from .terms import Terms, check, new_license_key

ChangeReason = Literal["renew", "upgrade", "change"]


@dataclass(frozen=True)
class Money:
    """An amount of a renewal or upgrade (minor units), for the four-eyes threshold and the
    sales report, and the requester's note (invoice number, link)."""

    amount_minor: int | None = None
    currency: str | None = None
    note: str | None = None

    def checked(self) -> Money:
        if (self.amount_minor is None) != (self.currency is None):
            raise ValidationFailed("amount_minor and currency go together")
        return self


@dataclass(frozen=True)
class IssueOrder:
    client_id: str
    contract_id: str | None
    product_id: str
    terms: Terms
    money: Money = Money()


def check_modules(
    session: Session, product_id: str, modules: tuple[str, ...], kept: tuple[str, ...] = ()
) -> None:
    """Every module must be the product's; one not already in the license must not be retired."""
    rows = {
        m.code: m
        for m in session.scalars(
            select(ProductModule).where(ProductModule.product_id == product_id)
        )
    }
    for code in modules:
        module = rows.get(code)
        if module is None:
            raise ValidationFailed(f"product {product_id!r} has no module {code!r}")
        if module.retired_at is not None and code not in kept:
            raise ValidationFailed(f"module {code!r} is retired")


class LicenseChanges:
    def __init__(self, ctx: ServiceContext, signer: Signer) -> None:
        self._ctx = ctx
        self._signer = signer

    def _sign(self, session: Session, lic: License, row: LicenseVersion, approver: str) -> None:
        sign_version(
            session,
            self._signer,
            issuer=self._ctx.settings.issuer,
            lic=lic,
            row=row,
            approved_by=approver,
            now=self._ctx.clock.now(),
        )

    def _new_version(
        self,
        session: Session,
        lic: License,
        actor: str,
        reason: str,
        terms: Terms,
        money: Money,
    ) -> tuple[LicenseVersion, FourEyesRule]:
        now = self._ctx.clock.now()
        latest = session.scalar(
            select(func.max(LicenseVersion.version)).where(LicenseVersion.license_id == lic.id)
        )
        row = LicenseVersion(
            license_id=lic.id,
            version=(latest or 0) + 1,
            reason=reason,
            terms=terms.to_json(),
            amount_minor=money.amount_minor,
            currency=money.currency,
            requested_by=actor,
            requested_at=now,
            note=money.note,
        )
        session.add(row)
        session.flush()
        rule, _ = read_rule(session)
        if not rule.applies(terms.plan, money.amount_minor, money.currency):
            self._sign(session, lic, row, actor)
        return row, rule

    def issue(self, actor: str, order: IssueOrder) -> LicenseView:
        with transaction(self._ctx.write) as session:
            return self.issue_in(session, actor, order)

    def issue_in(self, session: Session, actor: str, order: IssueOrder) -> LicenseView:
        """``issue`` inside the caller's transaction (an import issues many in one)."""
        now = self._ctx.clock.now()
        # What the body refers to first (404), then what the terms say (422).
        client = session.get(Client, order.client_id)
        if client is None:
            raise NotFound("no such client")
        if session.get(Product, order.product_id) is None:
            raise NotFound(f"no such product {order.product_id!r}")
        contract = None
        if order.contract_id is not None:
            contract = session.get(Contract, order.contract_id)
            if contract is None or contract.client_id != client.id:
                raise NotFound("no such contract of this client")
        if client.status == "archived":
            raise ValidationFailed("the client is archived")
        money = order.money.checked()
        if contract is not None and money.amount_minor is None:
            # The contract's amount counts for the four-eyes threshold unless the issuer
            # names the license's own share of it.
            money = replace(money, amount_minor=contract.amount_minor, currency=contract.currency)
        terms = check(order.terms, now=now)
        check_modules(session, order.product_id, terms.modules)
        lic = License(
            license_key=new_license_key(),
            client_id=client.id,
            contract_id=order.contract_id,
            product_id=order.product_id,
            status="pending_approval",
            version=0,
            created_by=actor,
            created_at=now,
            updated_at=now,
        )
        terms.apply_to(lic)
        session.add(lic)
        session.flush()
        row, _ = self._new_version(session, lic, actor, "issue", terms, money)
        record(
            session,
            now,
            actor,
            "license.issue",
            license_object(lic.id),
            {
                **version_details(row),
                "client_id": client.id,
                "product": order.product_id,
                "plan": terms.plan,
                "amount_minor": money.amount_minor,
                "currency": money.currency,
                "pending_approval": row.approved_at is None,
            },
        )
        return view(session, lic)

    def change(
        self,
        actor: str,
        ref: str,
        reason: ChangeReason,
        changes: Mapping[str, Any],
        money: Money = Money(),
    ) -> LicenseView:
        """A new version with ``changes`` (``Terms`` fields) over the in-force terms."""
        now = self._ctx.clock.now()
        with transaction(self._ctx.write) as session:
            lic = find_license(session, ref, lock=True)
            refuse_if_revoked(lic, "changed")
            waiting = pending_version(session, lic.id)
            if waiting is not None:
                raise AlreadyExists(
                    f"version {waiting.version} of this license awaits approval: "
                    "approve or reject it first"
                )
            money = money.checked()
            current = Terms.of_license(lic)
            terms = check(replace(current, **changes), now=now)
            if terms == current:
                raise ValidationFailed("nothing would change")
            if reason == "renew" and terms.valid_until <= current.valid_until:
                raise ValidationFailed("a renewal must move valid_until later")
            check_modules(session, lic.product_id, terms.modules, kept=current.modules)
            row, _ = self._new_version(session, lic, actor, reason, terms, money)
            record(
                session,
                now,
                actor,
                f"license.{reason}",
                license_object(lic.id),
                {
                    **version_details(row),
                    "changed": sorted(k for k in changes if changes[k] != getattr(current, k)),
                    "amount_minor": money.amount_minor,
                    "currency": money.currency,
                    "pending_approval": row.approved_at is None,
                },
            )
            return view(session, lic)

    # --- four eyes ---------------------------------------------------------------------------

    def _pending(self, session: Session, request_id: str) -> tuple[License, LicenseVersion]:
        row = session.get(LicenseVersion, request_id)
        if row is None:
            raise NotFound("no such license request")
        # The license's lock orders every change of its versions (as in ``change``).
        lic = find_license(session, row.license_id, lock=True)
        session.refresh(row)
        if row.approved_at is not None or row.rejected_at is not None:
            raise NotFound("this request was already decided")
        return lic, row

    def approve(self, actor: str, request_id: str) -> LicenseView:
        now = self._ctx.clock.now()
        with transaction(self._ctx.write) as session:
            lic, row = self._pending(session, request_id)
            if row.requested_by == actor:
                raise Forbidden(
                    "four eyes: the request must be approved by an Admin other than its requester"
                )
            refuse_if_revoked(lic, "approved")
            self._sign(session, lic, row, actor)
            record(
                session,
                now,
                actor,
                "license.approve",
                license_object(lic.id),
                {**version_details(row), "requested_by": row.requested_by},
            )
            return view(session, lic)

    def reject(self, actor: str, request_id: str, reason: str) -> LicenseView:
        now = self._ctx.clock.now()
        with transaction(self._ctx.write) as session:
            lic, row = self._pending(session, request_id)
            row.rejected_by = actor
            row.rejected_at = now
            row.rejection_reason = reason
            if lic.version == 0:
                # Its first version turned down, the license never existed for anyone: it is
                # closed for good (and, never signed, stays off the revocation list).
                lic.status = "revoked"
                lic.revoked_at = now
                lic.status_reason = f"rejected: {reason}"[:500]
                lic.updated_at = now
            record(
                session,
                now,
                actor,
                "license.reject",
                license_object(lic.id),
                {**version_details(row), "requested_by": row.requested_by, "reason": reason},
            )
            return view(session, lic)

    def requests(self) -> list[tuple[LicenseVersion, License]]:
        """Every pending request, oldest first."""
        with transaction(self._ctx.read) as session:
            rows = session.execute(
                select(LicenseVersion, License)
                .join(License, License.id == LicenseVersion.license_id)
                .where(LicenseVersion.approved_at.is_(None), LicenseVersion.rejected_at.is_(None))
                .order_by(LicenseVersion.requested_at, LicenseVersion.id)
                .limit(1000)
            ).all()
            return [(v, lic) for v, lic in rows]
