"""Licenses for the product API's tests, written straight through the ORM (the staff issuing
flow is not needed to test activations): a client, the product, a license and its signed
versions, signed with the backend's own signer."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from agent.protocol import LicenseLimits
from server_stub.db import transaction
from server_stub.portal_models import Client, Contract, License, LicenseVersion
from server_stub.services import revocations
from server_stub.services.license_files import LicenseTerms, issue_license_file
from server_stub.wiring import Services

from .catalog import PRODUCT, ensure_catalog

DOMAIN = "crm.example.com"
VERSION = "2.4"
MODULES = ("ai_forecast", "multi_department")
LIMITS = LicenseLimits(users=50, departments=5, integrations=3, api_rate=600, messages=100_000)


@dataclass(frozen=True)
class PortalLicense:
    id: str
    key: str
    client_id: str


def new_key() -> str:
    """A random license key (128 bits) in the license-key format."""
    return "TGF-" + secrets.token_hex(16).upper()


def fingerprint() -> str:
    return "fp-" + secrets.token_hex(16)


def _terms(row: License, customer: str) -> LicenseTerms:
    return LicenseTerms(
        license_key=row.license_key,
        file_version=row.version,
        customer_id=row.client_id,
        customer_name=customer,
        product=row.product_id,
        plan=row.plan,
        modules=tuple(row.modules),
        limits=LicenseLimits.model_validate(row.limits),
        valid_from=row.valid_from,
        valid_until=row.valid_until,
        grace=timedelta(days=row.grace_days),
        domain=row.domain,
        min_version=row.min_version,
        max_version=row.max_version,
    )


def _sign_version(services: Services, session: Any, row: License, reason: str) -> None:
    now = services.ctx.clock.now()
    text = issue_license_file(
        services.signer,
        _terms(row, "ООО Ромашка"),
        issuer=services.ctx.settings.issuer,
        now=now,
        encrypt=row.encrypted,
    )
    session.add(
        LicenseVersion(
            license_id=row.id,
            version=row.version,
            reason=reason,
            terms={"valid_until": row.valid_until.isoformat()},
            requested_by="test",
            requested_at=now,
            approved_by="test",
            approved_at=now,
            file_text=text,
            signed_at=now,
        )
    )


def make_license(services: Services, *, paid: bool | None = None, **columns: Any) -> PortalLicense:
    """An active license valid for a year (``columns`` override License columns); ``paid``:
    None = no contract, else a contract paid or not."""
    now = services.ctx.clock.now()
    with transaction(services.ctx.write) as session:
        ensure_catalog(session, now, MODULES)
        client = Client(
            legal_name="ООО Ромашка",
            inn=str(secrets.randbelow(10**10)).zfill(10),
            segment="smb",
            deployment="on_prem",
            contacts=[],
            created_at=now,
            updated_at=now,
        )
        session.add(client)
        session.flush()
        contract_id = None
        if paid is not None:
            contract = Contract(
                client_id=client.id,
                number="C-" + secrets.token_hex(6),
                signed_on=date(2026, 1, 1),
                amount_minor=100_000_00,
                currency="RUB",
                status="paid" if paid else "signed",
                paid_at=now if paid else None,
                created_at=now,
                updated_at=now,
            )
            session.add(contract)
            session.flush()
            contract_id = contract.id
        values: dict[str, Any] = {
            "license_key": new_key(),
            "client_id": client.id,
            "contract_id": contract_id,
            "product_id": PRODUCT,
            "plan": "advanced",
            "modules": list(MODULES),
            "limits": LIMITS.model_dump(),
            "valid_from": now - timedelta(days=1),
            "valid_until": now + timedelta(days=365),
            "grace_days": 14,
            "domain": DOMAIN,
            "min_version": "2.0",
            "max_version": "3.0",
            "status": "active",
            "version": 1,
            "heartbeat_window_s": 600,
            "ip_ranges": [],
            "created_by": "test",
            "created_at": now,
            "updated_at": now,
        }
        values.update(columns)
        row = License(**values)
        session.add(row)
        session.flush()
        if row.version >= 1:
            _sign_version(services, session, row, "issue")
        return PortalLicense(row.id, row.license_key, client.id)


def renew(services: Services, license_id: str, days: int = 365) -> int:
    """Sign the next version (validity extended by ``days``); returns its number."""
    with transaction(services.ctx.write) as session:
        row = session.get_one(License, license_id)
        row.version += 1
        row.valid_until += timedelta(days=days)
        _sign_version(services, session, row, "renew")
        return row.version


def set_status(services: Services, license_id: str, status: str) -> None:
    """Suspend, revoke or reactivate; a revocation re-signs the revocation list."""
    now = services.ctx.clock.now()
    with transaction(services.ctx.write) as session:
        row = session.get_one(License, license_id)
        row.status = status
        if status == "revoked":
            row.revoked_at = now
            revocations.publish(
                session, services.signer, issuer=services.ctx.settings.issuer, now=now
            )


def activate_body(lic: PortalLicense, fp: str | None = None, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "license_key": lic.key,
        "fingerprint": fp or fingerprint(),
        "server_id": "srv-1",
        "product_version": VERSION,
        "domain": DOMAIN,
        "modules": ["ai_forecast"],
    }
    body.update(fields)
    return body


def heartbeat_body(
    lic: PortalLicense, activated: dict[str, Any], fp: str, **fields: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "license_key": lic.key,
        "activation_id": activated["activation_id"],
        "fingerprint": fp,
        "product_version": VERSION,
        "file_version": activated["file_version"],
        "modules": ["ai_forecast"],
    }
    body.update(fields)
    return body
