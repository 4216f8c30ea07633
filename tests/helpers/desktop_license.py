"""License files for desktop tests, signed by the test backend's own license key (so pinned)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from agent.protocol import LicenseLimits, RevokedLicense
from app.demo import DemoBackend
from server_stub.services.license_files import (
    LicenseTerms,
    issue_license_file,
    issue_revocation_list,
)

#: The domain Desktop.make_core gives the installation; the files are for its DNS domain.
DOMAIN = "*.corp.example.com"
KEY = "TGF-7Q2M-K4DX-91ZA-WE5R"

TERMS = LicenseTerms(
    license_key=KEY,
    file_version=1,
    customer_id="c-7",
    customer_name="ООО Ромашка",
    product="tgflow",
    plan="advanced",
    modules=("marketplace", "multi_account"),
    limits=LicenseLimits(users=25, departments=None, integrations=3, api_rate=600, messages=5),
    valid_from=datetime(2000, 1, 1),  # replaced by license_text
    valid_until=datetime(2000, 1, 1),
    grace=timedelta(days=14),
    domain=DOMAIN,
    min_version="0.1",
    max_version="1.0",
)


def license_text(
    backend: DemoBackend,
    now: datetime,
    *,
    encrypt: bool = True,
    revoke: bool = False,
    **changes: Any,
) -> str:
    """A license file valid from a day before ``now`` for a year, with ``changes`` to the terms."""
    terms = replace(
        TERMS,
        valid_from=now - timedelta(days=1),
        valid_until=now + timedelta(days=365),
    )
    terms = replace(terms, **changes)
    signer = backend.services.signer
    issuer = backend.services.ctx.settings.issuer
    revocations = None
    if revoke:
        revocations = issue_revocation_list(
            signer,
            [RevokedLicense(license_key=terms.license_key, file_versions=None)],
            issuer=issuer,
            now=now,
            next_update=now + timedelta(days=1),
        )
    return issue_license_file(
        signer, terms, issuer=issuer, now=now, encrypt=encrypt, revocation_list=revocations
    )


def write_license(path: Path, backend: DemoBackend, now: datetime, **changes: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(license_text(backend, now, **changes), encoding="utf-8")
    return path
