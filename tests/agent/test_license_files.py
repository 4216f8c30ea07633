"""Offline license files: what the agent accepts, and every forgery and tampering it refuses."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from agent.errors import (
    DomainMismatch,
    LicenseFileExpired,
    LicenseFileRejected,
    LicenseRevoked,
    TamperDetected,
    TokenInvalid,
    UntrustedKey,
    VersionNotCovered,
    WrongLicenseKey,
)
from agent.licensing import domain_matches, parse_armour
from agent.protocol import (
    LICENSE_ARMOUR_BEGIN,
    LICENSE_ARMOUR_END,
    LICENSE_FILE_TYP,
    REVOCATION_LIST_TYP,
    SIGNING_KEY_ARMOUR_HEADER,
    RevokedLicense,
    b64url,
    license_file_key,
)
from server_stub.services.license_files import armour
from server_stub.signing.file import der_to_raw
from tests.helpers.license_files import (
    LICENSE_KEY,
    NOW,
    TERMS,
    Installation,
    Vendor,
    installation,
    terms,
    vendor,
)


@pytest.fixture
def site(tmp_path: Path, seller: Vendor) -> Installation:
    """An installation that was online once: the pinned keys are in its JWKS cache."""
    return installation(tmp_path / "agent", [seller.pin], jwks=seller.keys.jwks())


def _parts(text: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    head, payload, sig = parse_armour(text).license_jws.split(".")
    pad = lambda s: s + "=" * (-len(s) % 4)  # noqa: E731
    return (
        json.loads(base64.urlsafe_b64decode(pad(head))),
        json.loads(base64.urlsafe_b64decode(pad(payload))),
        sig,
    )


def _b64json(value: Any) -> str:
    return b64url(json.dumps(value, separators=(",", ":")).encode("utf-8"))


def _es256(private: ec.EllipticCurvePrivateKey, header: Any, payload: Any) -> str:
    signing_input = f"{_b64json(header)}.{_b64json(payload)}"
    raw = der_to_raw(private.sign(signing_input.encode("ascii"), ec.ECDSA(hashes.SHA256())))
    return f"{signing_input}.{b64url(raw)}"


def _armoured(jws: str) -> str:
    return armour(LICENSE_ARMOUR_BEGIN, LICENSE_ARMOUR_END, jws)


def _with_carried_key(jws: str, genuine: str) -> str:
    """``jws`` armoured with the Signing-Key of the ``genuine`` file."""
    carried = parse_armour(genuine).carried_key
    assert carried is not None
    headers = {SIGNING_KEY_ARMOUR_HEADER: _b64json(dict(carried))}
    return armour(LICENSE_ARMOUR_BEGIN, LICENSE_ARMOUR_END, jws, headers)


def _license_key(seller: Vendor) -> ec.EllipticCurvePrivateKey:
    private = seller.keys.signing_key("license").private_key
    assert isinstance(private, ec.EllipticCurvePrivateKey)
    return private


# --- what is accepted ------------------------------------------------------------------------


def test_a_genuine_file_activates_offline_with_its_modules_and_limits(
    seller: Vendor, offline_site: Installation
) -> None:
    site = offline_site
    text = seller.license_file()
    assert text.startswith(LICENSE_ARMOUR_BEGIN + "\n")
    assert text.rstrip().endswith(LICENSE_ARMOUR_END)
    lic = site.verifier.verify(text, LICENSE_KEY)
    assert lic.license_key == LICENSE_KEY and lic.file_version == 1
    assert lic.customer_name == "ООО Ромашка" and lic.plan == "advanced"
    assert lic.modules == frozenset({"ai_forecast", "multi_department"})
    assert lic.has_module("ai_forecast") and not lic.has_module("sso")
    assert (lic.limits.users, lic.limits.departments, lic.limits.messages) == (50, 5, 100_000)
    assert lic.limits.api_rate == 600 and lic.limits.integrations == 3
    assert lic.valid_until == TERMS.valid_until and not lic.in_grace
    assert lic.expires_at == TERMS.valid_until + TERMS.grace
    assert lic.kid == seller.keys.signing_key("license").kid
    # Nothing was fetched: the key came with the file and passed the pin.
    assert site.keys.kids() == frozenset()


def test_a_key_known_from_the_jwks_cache_verifies_a_file_without_a_carried_key(
    seller: Vendor, site: Installation, offline_site: Installation
) -> None:
    jws = parse_armour(seller.license_file()).license_jws
    assert site.verifier.verify(_armoured(jws)).file_version == 1
    with pytest.raises(UntrustedKey, match="no pinned signing key"):
        offline_site.verifier.verify(_armoured(jws))


def test_the_file_survives_rewrapping_and_crlf_line_ends(
    seller: Vendor, site: Installation
) -> None:
    text = seller.license_file().replace("\n", "\r\n")
    assert site.verifier.verify("\ufeff  " + text + "\r\n\r\n", LICENSE_KEY).file_version == 1


def test_in_grace_after_validity_and_refused_once_grace_is_over(
    seller: Vendor, site: Installation
) -> None:
    text = seller.license_file()
    site.clock.set(TERMS.valid_until + timedelta(days=1))
    assert site.verifier.verify(text).in_grace
    site.clock.set(TERMS.valid_until + TERMS.grace + timedelta(seconds=61))
    with pytest.raises(LicenseFileExpired, match="grace ended"):
        site.verifier.verify(text)


def test_a_file_not_valid_yet_is_refused(seller: Vendor, site: Installation) -> None:
    text = seller.license_file(terms(valid_from=NOW + timedelta(days=2)))
    with pytest.raises(LicenseFileExpired, match="not valid before"):
        site.verifier.verify(text)


# --- forgery ---------------------------------------------------------------------------------


def test_a_file_signed_by_an_unpinned_key_is_refused(tmp_path: Path, site: Installation) -> None:
    impostor = vendor(tmp_path / "impostor-keys")
    with pytest.raises(UntrustedKey, match="not pinned"):
        site.verifier.verify(impostor.license_file())


def test_a_file_naming_the_pinned_kid_but_signed_by_another_key_is_refused(
    seller: Vendor, site: Installation
) -> None:
    text = seller.license_file()
    header, claims, _ = _parts(text)
    claims["limits"]["users"] = 10_000
    forged = _es256(ec.generate_private_key(ec.SECP256R1()), header, claims)
    with pytest.raises(TokenInvalid, match="signature is invalid"):
        site.verifier.verify(_with_carried_key(forged, text))


def test_a_kid_that_is_not_the_carried_keys_is_refused(seller: Vendor, site: Installation) -> None:
    text = seller.license_file()
    header, claims, _ = _parts(text)
    header["kid"] = "x" * 43
    with pytest.raises(UntrustedKey, match=f"names key {'x' * 43}, not the key it carries"):
        site.verifier.verify(_with_carried_key(_es256(_license_key(seller), header, claims), text))


def test_edited_claims_break_the_signature(seller: Vendor, site: Installation) -> None:
    text = seller.license_file()
    jws = parse_armour(text).license_jws
    head, payload, sig = jws.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    for edit in (
        {"modules": ["ai_forecast", "multi_department", "sso"]},
        {"exp": claims["exp"] + 86400},
        {"domain": "other.example.com"},
    ):
        edited = f"{head}.{_b64json({**claims, **edit})}.{sig}"
        with pytest.raises(TokenInvalid, match="signature is invalid"):
            site.verifier.verify(_with_carried_key(edited, text))


@pytest.mark.parametrize("alg", ["none", "HS256", "RS256", "ES384"])
def test_other_algorithms_are_refused_before_any_key_is_used(
    seller: Vendor, site: Installation, alg: str
) -> None:
    header, claims, _ = _parts(seller.license_file())
    header["alg"] = alg
    signing_input = f"{_b64json(header)}.{_b64json(claims)}"
    # HS256 keyed with the public key's PEM: the classic key-confusion forgery.
    pem = seller.keys.signing_key("license").public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    mac = hmac.new(pem, signing_input.encode(), hashlib.sha256).digest()
    jws = f"{signing_input}.{b64url(mac) if alg == 'HS256' else ''}"
    with pytest.raises(TokenInvalid, match=f"must be signed with ES256, not '{alg}'"):
        site.verifier.verify(_armoured(jws))


def test_a_revocation_list_presented_as_a_license_file_is_refused(
    seller: Vendor, site: Installation
) -> None:
    listing = seller.revocation_list([])
    with pytest.raises(TokenInvalid, match=f"typ is '{REVOCATION_LIST_TYP}'"):
        site.verifier.verify(_armoured(listing))
    # … and a license file is not a revocation list either.
    jws = parse_armour(seller.license_file()).license_jws
    with pytest.raises(TokenInvalid, match=f"typ is '{LICENSE_FILE_TYP}'"):
        site.revocations.offer(jws)


@pytest.mark.parametrize(
    "header_change",
    [{"crit": ["exp"]}, {"b64": False}, {"cty": "something-else"}, {"kid": None}],
)
def test_header_extensions_and_a_missing_kid_are_refused(
    seller: Vendor, site: Installation, header_change: dict[str, Any]
) -> None:
    text = seller.license_file()
    header, claims, _ = _parts(text)
    header.update(header_change)
    with pytest.raises(TokenInvalid):
        site.verifier.verify(_with_carried_key(_es256(_license_key(seller), header, claims), text))


@pytest.mark.parametrize(
    "text",
    [
        "",
        "hello",
        LICENSE_ARMOUR_BEGIN + "\nabc",
        LICENSE_ARMOUR_BEGIN + "\n@@\n" + LICENSE_ARMOUR_END,
    ],
)
def test_text_that_is_not_a_license_file_is_refused(site: Installation, text: str) -> None:
    with pytest.raises(TokenInvalid):
        site.verifier.verify(text)


def test_a_file_of_another_issuer_is_refused(seller: Vendor, site: Installation) -> None:
    header, claims, _ = _parts(seller.license_file())
    claims["iss"] = "someone-else"
    text = _with_carried_key(_es256(_license_key(seller), header, claims), seller.license_file())
    with pytest.raises(TokenInvalid, match="issued by 'someone-else'"):
        site.verifier.verify(text)


# --- the installation ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("licensed", "installed", "ok"),
    [
        ("crm.example.com", "CRM.example.com.", True),
        ("*.example.com", "crm.example.com", True),
        ("*.example.com", "a.b.example.com", True),
        ("*.example.com", "example.com", False),
        ("*.example.com", "badexample.com", False),
        ("crm.example.com", "crm.example.com.evil.io", False),
    ],
)
def test_domain_matching(licensed: str, installed: str, ok: bool) -> None:
    assert domain_matches(licensed, installed) is ok


def test_another_domain_is_refused(seller: Vendor, tmp_path: Path) -> None:
    site = installation(tmp_path / "a", [seller.pin], domain="erp.other.org")
    with pytest.raises(DomainMismatch, match=r"erp\.other\.org"):
        site.verifier.verify(seller.license_file())


@pytest.mark.parametrize(
    ("version", "ok"),
    [("1.9.9", False), ("2", True), ("2.99", True), ("3.0", False), ("3.0.1", False)],
)
def test_the_product_version_range(seller: Vendor, tmp_path: Path, version: str, ok: bool) -> None:
    site = installation(tmp_path / "v", [seller.pin], version=version)
    if ok:
        assert site.verifier.verify(seller.license_file()).max_version == "3.0"
    else:
        with pytest.raises(VersionNotCovered):
            site.verifier.verify(seller.license_file())


def test_another_product_is_refused(seller: Vendor, site: Installation) -> None:
    with pytest.raises(LicenseFileRejected, match="'other'"):
        site.verifier.verify(seller.license_file(terms(product="other")))


# --- encryption ------------------------------------------------------------------------------


def test_encrypted_file_round_trip_and_wrong_key(seller: Vendor, site: Installation) -> None:
    text = seller.license_file(encrypt=True)
    header, payload, _ = _parts(text)
    assert header["cty"] == "license-file+a256gcm"
    assert set(payload) == {"enc", "kdf", "iv", "ciphertext"}
    assert LICENSE_KEY not in json.dumps(payload) and "Ромашка" not in text
    assert site.verifier.verify(text, LICENSE_KEY).modules == {"ai_forecast", "multi_department"}
    with pytest.raises(WrongLicenseKey, match="does not open"):
        site.verifier.verify(text, "TGF-0000-0000-0000-0000")
    with pytest.raises(WrongLicenseKey, match="is needed"):
        site.verifier.verify(text)


def test_a_plain_file_for_another_license_key_is_refused(
    seller: Vendor, site: Installation
) -> None:
    with pytest.raises(WrongLicenseKey, match="another license key"):
        site.verifier.verify(seller.license_file(), "TGF-0000-0000-0000-0000")


# --- revocation ------------------------------------------------------------------------------


def test_a_license_on_the_newest_list_is_refused_even_offline_and_after_a_restart(
    seller: Vendor, site: Installation, tmp_path: Path
) -> None:
    text = seller.license_file()
    assert site.revocations.offer(seller.revocation_list([RevokedLicense(license_key=LICENSE_KEY)]))
    with pytest.raises(LicenseRevoked):
        site.verifier.verify(text)
    restarted = installation(site.data_dir, [seller.pin])
    with pytest.raises(LicenseRevoked):
        restarted.verifier.verify(text)
    assert (site.data_dir / "revocations.json").stat().st_mode & 0o777 == 0o600


def test_an_older_list_never_replaces_a_newer_one(seller: Vendor, site: Installation) -> None:
    older = seller.revocation_list([], now=NOW - timedelta(hours=1))
    newer = seller.revocation_list([RevokedLicense(license_key=LICENSE_KEY)], now=NOW)
    assert site.revocations.offer(newer)
    assert not site.revocations.offer(older)  # a replay that would un-revoke
    assert not site.revocations.offer(newer)
    with pytest.raises(LicenseRevoked):
        site.verifier.verify(seller.license_file())
    # The file a replayed older list came in with does not help either.
    with pytest.raises(LicenseRevoked):
        site.verifier.verify(seller.license_file(revocation_list=older))


def test_a_list_that_comes_with_a_file_update_is_honoured_offline_and_after_a_restart(
    seller: Vendor, offline_site: Installation
) -> None:
    site = offline_site
    v1 = seller.license_file()
    assert site.verifier.verify(v1).file_version == 1
    revoke_v1 = seller.revocation_list(
        [RevokedLicense(license_key=LICENSE_KEY, file_versions=(1,))]
    )
    v2 = seller.license_file(terms(file_version=2), revocation_list=revoke_v1)
    lic = site.verifier.verify(v2)
    assert lic.file_version == 2
    with pytest.raises(LicenseRevoked, match="file version 1"):
        site.verifier.verify(v1)
    restarted = installation(site.data_dir, [seller.pin])
    assert restarted.revocations.current is not None
    with pytest.raises(LicenseRevoked):
        restarted.verifier.verify(v1)


def test_a_forged_or_foreign_revocation_list_is_refused(
    seller: Vendor, site: Installation, tmp_path: Path
) -> None:
    impostor = vendor(tmp_path / "impostor")
    with pytest.raises(UntrustedKey):
        site.revocations.offer(impostor.revocation_list([]))
    with pytest.raises(TokenInvalid, match="issued by"):
        site.revocations.offer(seller.revocation_list([], issuer="other"))
    # A forged list riding in a genuine file makes the whole file unusable.
    with pytest.raises(UntrustedKey):
        site.verifier.verify(seller.license_file(revocation_list=impostor.revocation_list([])))
    assert site.revocations.current is None


def test_an_edited_revocations_file_only_loses_the_list(seller: Vendor, site: Installation) -> None:
    site.revocations.offer(seller.revocation_list([RevokedLicense(license_key=LICENSE_KEY)]))
    path = site.data_dir / "revocations.json"
    doc = json.loads(path.read_text())
    head, _payload, sig = doc["list"].split(".")
    doc["list"] = f"{head}.{_b64json({'format': 'tgflow.revocation-list/1'})}.{sig}"
    path.write_text(json.dumps(doc))
    assert installation(site.data_dir, [seller.pin]).revocations.current is None


# --- the clock -------------------------------------------------------------------------------


def test_a_clock_set_back_is_refused_with_the_leases_rule(
    seller: Vendor, site: Installation
) -> None:
    text = seller.license_file()
    site.verifier.verify(text)
    site.clock.advance(3600)
    site.verifier.verify(text)
    site.clock.advance(-3600)  # back to before: beyond the 5-minute tolerance
    with pytest.raises(TamperDetected, match="behind the latest time already seen"):
        site.verifier.verify(text)
    # The lease store shares the same latest time seen: one rule per installation.
    assert site.lease_store.last_seen == NOW + timedelta(seconds=3600)
    site.clock.advance(3600 - 200)
    assert site.verifier.verify(text).file_version == 1


def test_the_files_signed_issue_time_counts_as_seen(seller: Vendor, site: Installation) -> None:
    # Issued (by the vendor's clock) a day after the agent's clock: refused as from the future.
    with pytest.raises(TokenInvalid, match="issued in the future"):
        site.verifier.verify(seller.license_file(now=NOW + timedelta(days=1)))
    site.verifier.verify(seller.license_file(now=NOW - timedelta(seconds=10)))
    assert site.lease_store.last_seen == NOW


def test_the_file_key_is_the_documented_hkdf_sha256() -> None:
    # RFC 5869 by hand, as docs/license-files.md states it: no salt (a zero block), one block.
    prk = hmac.new(b"\x00" * 32, LICENSE_KEY.encode(), hashlib.sha256).digest()
    okm = hmac.new(prk, b"tgflow license file A256GCM v1" + b"\x01", hashlib.sha256).digest()
    assert license_file_key(LICENSE_KEY) == okm
    assert license_file_key("TGF-0000-0000-0000-0000") != okm
