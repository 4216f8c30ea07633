"""License files and revocation lists: the signed documents an installation verifies offline.

docs/license-files.md is the contract. The functions here are pure (no database, no clock of
their own): the staff endpoints that come later look the license up, decide, audit, and call
:func:`issue_license_file` / :func:`issue_revocation_list` with what they decided.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from agent.protocol import (
    ARMOUR_LINE_LENGTH,
    ENCRYPTED_LICENSE_CTY,
    LICENSE_ARMOUR_BEGIN,
    LICENSE_ARMOUR_END,
    LICENSE_FILE_ENCRYPTION,
    LICENSE_FILE_FORMAT,
    LICENSE_FILE_KDF,
    LICENSE_FILE_NONCE_BYTES,
    LICENSE_FILE_TYP,
    REVOCATION_ARMOUR_BEGIN,
    REVOCATION_ARMOUR_END,
    REVOCATION_LIST_FORMAT,
    REVOCATION_LIST_TYP,
    SIGNED_DOCUMENT_ALG,
    SIGNING_KEY_ARMOUR_HEADER,
    EncryptedLicensePayload,
    LicenseCustomer,
    LicenseFileClaims,
    LicenseLimits,
    ProductVersionRange,
    RevocationListClaims,
    RevokedLicense,
    b64url,
    license_file_key,
)

from ..keys import public_jwk
from ..signing import Signer, sign_jws, sign_jws_with


@dataclass(frozen=True)
class LicenseTerms:
    """What staff decided for one version of a license file."""

    license_key: str
    file_version: int
    customer_id: str
    customer_name: str
    product: str
    plan: str
    modules: Sequence[str]
    limits: LicenseLimits
    valid_from: datetime
    valid_until: datetime
    grace: timedelta
    domain: str
    min_version: str
    max_version: str | None = None


def license_claims(terms: LicenseTerms, *, issuer: str, now: datetime) -> LicenseFileClaims:
    """The claims of a license file for ``terms``, validated by the shared wire model."""
    return LicenseFileClaims(
        format=LICENSE_FILE_FORMAT,
        iss=issuer,
        jti=secrets.token_hex(16),
        iat=int(now.timestamp()),
        nbf=int(terms.valid_from.timestamp()),
        valid_until=int(terms.valid_until.timestamp()),
        exp=int((terms.valid_until + terms.grace).timestamp()),
        license_key=terms.license_key,
        file_version=terms.file_version,
        customer=LicenseCustomer(id=terms.customer_id, name=terms.customer_name),
        product=terms.product,
        plan=terms.plan,
        modules=tuple(sorted(set(terms.modules))),
        limits=terms.limits,
        domain=terms.domain.lower(),
        versions=ProductVersionRange(min=terms.min_version, max=terms.max_version),
    )


def armour(begin: str, end: str, jws: str, headers: Mapping[str, str] | None = None) -> str:
    """``jws`` between the two armour lines, cut into :data:`ARMOUR_LINE_LENGTH`-char lines.

    ``headers`` become ``Name: value`` lines and a blank line before the JWS (as in PEM).
    """
    lines = [jws[i : i + ARMOUR_LINE_LENGTH] for i in range(0, len(jws), ARMOUR_LINE_LENGTH)]
    head = [f"{name}: {value}" for name, value in (headers or {}).items()]
    if head:
        head.append("")
    return "\n".join([begin, *head, *lines, end]) + "\n"


def encrypt_claims(payload: bytes, license_key: str) -> bytes:
    """An encrypted file's JWS payload: ``payload`` under AES-256-GCM, keyed by the license key."""
    nonce = os.urandom(LICENSE_FILE_NONCE_BYTES)
    sealed = AESGCM(license_file_key(license_key)).encrypt(nonce, payload, None)
    envelope = EncryptedLicensePayload(
        enc=LICENSE_FILE_ENCRYPTION,
        kdf=LICENSE_FILE_KDF,
        iv=b64url(nonce),
        ciphertext=b64url(sealed),
    )
    return envelope.model_dump_json().encode("utf-8")


def issue_license_file(
    signer: Signer,
    terms: LicenseTerms,
    *,
    issuer: str,
    now: datetime,
    encrypt: bool = False,
    revocation_list: str | None = None,
) -> str:
    """An armoured license file for ``terms``, signed by ``signer``.

    With ``encrypt`` the claims are sealed to the license key (encrypt-then-sign, as Keygen does:
    the signature covers the ciphertext, so a file's origin is checkable without the key). A
    ``revocation_list`` (from :func:`issue_revocation_list`) is appended in its own armour, so a
    file update also brings an offline installation the newest list.
    """
    claims = license_claims(terms, issuer=issuer, now=now)
    payload = json.dumps(claims.model_dump(mode="json"), separators=(",", ":")).encode("utf-8")
    handle = signer.current()
    if encrypt:
        jws = sign_jws_with(
            handle,
            LICENSE_FILE_TYP,
            encrypt_claims(payload, terms.license_key),
            extra_header={"cty": ENCRYPTED_LICENSE_CTY},
        )
    else:
        jws = sign_jws_with(handle, LICENSE_FILE_TYP, payload)
    # The public key rides along (unsigned, and useless unless pinned) so that an installation
    # that never reached the server can still verify the file.
    jwk = {**public_jwk(handle.public_key), "kid": handle.kid, "alg": SIGNED_DOCUMENT_ALG}
    key_header = b64url(json.dumps(jwk, separators=(",", ":")).encode("utf-8"))
    text = armour(
        LICENSE_ARMOUR_BEGIN, LICENSE_ARMOUR_END, jws, {SIGNING_KEY_ARMOUR_HEADER: key_header}
    )
    if revocation_list is not None:
        text += armour(REVOCATION_ARMOUR_BEGIN, REVOCATION_ARMOUR_END, revocation_list)
    return text


def issue_revocation_list(
    signer: Signer,
    revoked: Iterable[RevokedLicense],
    *,
    issuer: str,
    now: datetime,
    next_update: datetime,
) -> str:
    """A signed revocation list (compact JWS, ``typ`` revocation-list) of ``revoked``."""
    claims = RevocationListClaims(
        format=REVOCATION_LIST_FORMAT,
        iss=issuer,
        iat=int(now.timestamp()),
        next_update=int(next_update.timestamp()),
        revoked=tuple(sorted(revoked, key=lambda r: r.license_key)),
    )
    payload = json.dumps(claims.model_dump(mode="json"), separators=(",", ":")).encode("utf-8")
    return sign_jws(signer, REVOCATION_LIST_TYP, payload)
