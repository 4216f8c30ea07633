"""Signing a license version when it takes effect: the file, its checksum and key, and the
version's terms moved onto the license."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from datetime import datetime

from sqlalchemy.orm import Session

from agent.protocol import LICENSE_ARMOUR_BEGIN, LICENSE_ARMOUR_END

from ...portal_models import Client, License, LicenseVersion
from ...signing import Signer
from .. import revocations
from ..license_files import LicenseTerms, issue_license_file
from .terms import Terms


def checksum(text: str) -> str:
    """SHA-256 (hex) of a file's UTF-8 text: what the history shows and a customer can check."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def kid_of(text: str) -> str | None:
    """The ``kid`` in the protected header of an armoured license file we just signed."""
    lines = text.splitlines()
    try:
        body = lines[lines.index(LICENSE_ARMOUR_BEGIN) + 1 : lines.index(LICENSE_ARMOUR_END)]
    except ValueError:
        return None
    jws = "".join(line for line in body if line and ":" not in line)
    head = jws.split(".", 1)[0]
    try:
        header = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    except (binascii.Error, ValueError):
        return None
    kid = header.get("kid") if isinstance(header, dict) else None
    return kid if isinstance(kid, str) else None


def sign_version(
    session: Session,
    signer: Signer,
    *,
    issuer: str,
    lic: License,
    row: LicenseVersion,
    approved_by: str,
    now: datetime,
) -> None:
    """Sign ``row`` and make it the license's in-force version (in ``session``'s transaction)."""
    terms = Terms.from_json(row.terms)
    client = session.get(Client, lic.client_id)
    text = issue_license_file(
        signer,
        LicenseTerms(
            license_key=lic.license_key,
            file_version=row.version,
            customer_id=lic.client_id,
            customer_name=client.legal_name if client is not None else "",
            product=lic.product_id,
            plan=terms.plan,
            modules=terms.modules,
            limits=terms.license_limits,
            valid_from=terms.valid_from,
            valid_until=terms.valid_until,
            grace=terms.grace,
            domain=terms.domain,
            min_version=terms.min_version,
            max_version=terms.max_version,
        ),
        issuer=issuer,
        now=now,
        encrypt=terms.encrypted,
        # Every file brings the newest list, so an offline site learns of revocations with it.
        revocation_list=revocations.current(session, signer, issuer=issuer, now=now),
    )
    row.file_text = text
    row.checksum = checksum(text)
    row.kid = kid_of(text)
    row.signed_at = now
    row.approved_by = approved_by
    row.approved_at = now
    terms.apply_to(lic)
    lic.version = row.version
    lic.updated_at = now
    if lic.status == "pending_approval":
        lic.status = "active"
