"""The activated license file: kept, verified at every check, renewals picked up, never undone."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from agent.errors import LicenseFileExpired, LicenseFileRejected, LicenseRevoked, TokenInvalid
from agent.licensing import LicenseFileStore, NoLicenseFile
from agent.protocol import LicenseLimits, RevokedLicense
from tests.helpers.license_files import (
    LICENSE_KEY,
    TERMS,
    Installation,
    Vendor,
    installation,
    terms,
)


@pytest.fixture
def site(offline_site: Installation) -> Installation:
    return offline_site


def _store(site: Installation) -> LicenseFileStore:
    return LicenseFileStore(site.verifier, site.data_dir)


def test_an_activated_encrypted_file_is_kept_and_checked_again_after_a_restart(
    seller: Vendor, site: Installation
) -> None:
    store = _store(site)
    with pytest.raises(NoLicenseFile):
        store.check()
    store.activate(seller.license_file(encrypt=True), LICENSE_KEY)
    assert store.path.stat().st_mode & 0o777 == 0o600
    restarted = installation(site.data_dir, [seller.pin])
    lic = _store(restarted).check()
    assert lic.file_version == 1 and lic.has_module("ai_forecast")
    # Checked again, not cached: once past the grace the kept file stops working.
    restarted.clock.set(TERMS.valid_until + TERMS.grace + timedelta(days=1))
    with pytest.raises(LicenseFileExpired):
        _store(restarted).check()


def test_a_renewal_is_picked_up_and_an_old_version_cannot_undo_it(
    seller: Vendor, site: Installation
) -> None:
    store = _store(site)
    v1 = seller.license_file()
    store.activate(v1)
    upgrade = terms(
        file_version=2,
        modules=("ai_forecast", "multi_department", "sso"),
        limits=LicenseLimits(users=200),
    )
    lic = store.activate(seller.license_file(upgrade))
    assert store.check().file_version == 2 and lic.has_module("sso")
    assert store.check().limits.users == 200
    with pytest.raises(LicenseFileRejected, match="version 2 is already active"):
        store.activate(v1)
    assert store.check().file_version == 2
    # Another license may replace the kept one (the customer switched licenses).
    other = terms(license_key="TGF-1111-2222-3333-4444", file_version=1)
    assert store.activate(seller.license_file(other)).license_key == "TGF-1111-2222-3333-4444"


def test_a_kept_license_revoked_later_stops_working(seller: Vendor, site: Installation) -> None:
    store = _store(site)
    store.activate(seller.license_file())
    listing = seller.revocation_list([RevokedLicense(license_key=LICENSE_KEY)])
    # The list arrives with another license's file update; the kept file is refused from now on.
    other = terms(license_key="TGF-1111-2222-3333-4444")
    site.verifier.verify(seller.license_file(other, revocation_list=listing))
    with pytest.raises(LicenseRevoked):
        store.check()


def test_an_edited_store_is_refused_like_a_forged_file(seller: Vendor, site: Installation) -> None:
    store = _store(site)
    store.activate(seller.license_file())
    document = json.loads(store.path.read_text())
    document["file"] = document["file"].replace("\n", "\nX", 3)
    store.path.write_text(json.dumps(document))
    with pytest.raises(TokenInvalid):
        store.check()
    store.path.write_text("{not json")
    with pytest.raises(NoLicenseFile, match="damaged"):
        store.check()
