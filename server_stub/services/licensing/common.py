"""What the licensing managers share: finding a license, its versions, the audit object."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from ...errors import LicenseInactive, NotFound
from ...portal_models import Client, License, LicenseVersion


def license_object(license_id: str) -> str:
    """The audit log's object path of a license."""
    return f"license/{license_id}"


def find_license(session: Session, ref: str, *, lock: bool = False) -> License:
    """The license with id or key ``ref`` (locked for update with ``lock``), else 404."""
    query = select(License).where(
        License.id == ref if len(ref) == 36 and ref.count("-") == 4 else License.license_key == ref
    )
    lic = session.scalar(query.with_for_update() if lock else query)
    if lic is None:
        raise NotFound("no such license")
    return lic


def pending_version(session: Session, license_id: str) -> LicenseVersion | None:
    """The version awaiting an Admin's approval, if any (at most one at a time)."""
    return session.scalar(
        select(LicenseVersion).where(
            LicenseVersion.license_id == license_id,
            LicenseVersion.approved_at.is_(None),
            LicenseVersion.rejected_at.is_(None),
        )
    )


def version_row(session: Session, license_id: str, version: int) -> LicenseVersion | None:
    return session.scalar(
        select(LicenseVersion).where(
            LicenseVersion.license_id == license_id, LicenseVersion.version == version
        )
    )


def version_state(row: LicenseVersion) -> Literal["pending", "rejected", "signed"]:
    """``pending`` (awaits an Admin), ``rejected``, or ``signed`` (it took effect)."""
    if row.rejected_at is not None:
        return "rejected"
    return "signed" if row.signed_at is not None else "pending"


def refuse_if_revoked(lic: License, doing: str) -> None:
    if lic.status == "revoked":
        raise LicenseInactive(f"the license is revoked: it cannot be {doing}")


def version_details(row: LicenseVersion | None) -> dict[str, Any]:
    """What an audit entry says about a version: its number, reason, checksum and key."""
    if row is None:
        return {"version": 0, "checksum": None}
    return {
        "version": row.version,
        "reason": row.reason,
        "checksum": row.checksum,
        "kid": row.kid,
    }


@dataclass(frozen=True)
class LicenseView:
    """A license with its in-force version (None before the first is signed) and its pending
    request, if any."""

    license: License
    current: LicenseVersion | None
    pending: LicenseVersion | None
    client_name: str


def view(session: Session, lic: License) -> LicenseView:
    session.flush()  # the sessions do not autoflush: the queries below must see our changes
    client = session.get(Client, lic.client_id)
    return LicenseView(
        license=lic,
        current=version_row(session, lic.id, lic.version) if lic.version else None,
        pending=pending_version(session, lic.id),
        client_name=client.legal_name if client is not None else "",
    )
