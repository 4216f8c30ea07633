"""A vendor (server key store + signer) and an installation (agent verifier) for license files."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from agent.clock import FakeClock
from agent.key_pins import PinnedKeySet
from agent.lease import LeaseStore
from agent.licensing import DocumentVerifier, LicenseFileVerifier, RevocationStore
from agent.protocol import LicenseLimits, RevokedLicense
from server_stub.clock import FakeClock as ServerClock
from server_stub.keys import KeyStore
from server_stub.services.license_files import (
    LicenseTerms,
    issue_license_file,
    issue_revocation_list,
)
from server_stub.signing import FileSigner, Signer

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
LICENSE_KEY = "TGF-4F2A-9C1D-77B3-E0A5"
PRODUCT = "tgflow"
DOMAIN = "crm.example.com"
VERSION = "2.4"
ISSUER = "tgflow"

TERMS = LicenseTerms(
    license_key=LICENSE_KEY,
    file_version=1,
    customer_id="c-42",
    customer_name="ООО Ромашка",
    product=PRODUCT,
    plan="advanced",
    modules=("ai_forecast", "multi_department"),
    limits=LicenseLimits(users=50, departments=5, integrations=3, api_rate=600, messages=100_000),
    valid_from=NOW - timedelta(days=1),
    valid_until=NOW + timedelta(days=365),
    grace=timedelta(days=14),
    domain=DOMAIN,
    min_version="2.0",
    max_version="3.0",
)


def key_store(directory: Path) -> KeyStore:
    lifetimes = {"auth": timedelta(days=1), "license": timedelta(days=400)}
    return KeyStore(directory, ServerClock(NOW), lifetimes).ensure()


@dataclass
class Vendor:
    keys: KeyStore
    signer: Signer

    @property
    def pin(self) -> str:
        return self.keys.signing_key("license").pin

    def license_file(self, terms: LicenseTerms = TERMS, **options: Any) -> str:
        now = options.pop("now", NOW)
        return issue_license_file(self.signer, terms, issuer=ISSUER, now=now, **options)

    def revocation_list(
        self, revoked: list[RevokedLicense], *, now: datetime = NOW, issuer: str = ISSUER
    ) -> str:
        return issue_revocation_list(
            self.signer, revoked, issuer=issuer, now=now, next_update=now + timedelta(days=1)
        )


def vendor(directory: Path) -> Vendor:
    keys = key_store(directory)
    return Vendor(keys=keys, signer=FileSigner(keys))


@dataclass
class Installation:
    clock: FakeClock
    keys: PinnedKeySet
    lease_store: LeaseStore
    revocations: RevocationStore
    verifier: LicenseFileVerifier
    data_dir: Path


def installation(
    data_dir: Path,
    pins: list[str],
    *,
    jwks: dict[str, Any] | None = None,
    version: str = VERSION,
    domain: str = DOMAIN,
    clock: FakeClock | None = None,
) -> Installation:
    """An agent that has never reached the server (unless ``jwks`` seeds its JWKS cache)."""
    if jwks is not None:
        data_dir.mkdir(parents=True, exist_ok=True)
        (data_dir / "jwks.json").write_text(json.dumps({"jwks": jwks}), encoding="utf-8")
    clock = clock or FakeClock(NOW)
    # Port 9 (discard) is never contacted: the verifier only uses keys known now.
    keys = PinnedKeySet("http://127.0.0.1:9", pins, data_dir, clock=clock)
    documents = DocumentVerifier(keys)
    lease_store = LeaseStore(data_dir, clock=clock)
    revocations = RevocationStore(documents, data_dir, issuer=ISSUER)
    verifier = LicenseFileVerifier(
        documents,
        lease_store,
        revocations,
        product=PRODUCT,
        product_version=version,
        domain=domain,
        issuer=ISSUER,
        clock=clock,
    )
    return Installation(clock, keys, lease_store, revocations, verifier, data_dir)


def terms(**changes: Any) -> LicenseTerms:
    return replace(TERMS, **changes)
