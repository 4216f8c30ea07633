"""Signed documents and license files (docs/license-files.md): their `typ`s, the license-file
and revocation-list claims, the armour, and the key derivation of an encrypted file."""

from __future__ import annotations

import re
from typing import Annotated, Final, Literal

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from pydantic import BaseModel, ConfigDict, Field, Strict, StringConstraints, model_validator

# --- signed documents and license files (docs/license-files.md) ---------------------------------
#
# License files, machine activations, revocation lists and audit checkpoints are compact ES256 JWS
# signed with the server's ``license`` key, ``kid`` and ``typ`` in the protected header. The
# ``typ`` keeps one kind from ever passing as another (RFC 8725 §3.11, explicit typing).

#: The one algorithm of every signed document.
SIGNED_DOCUMENT_ALG: Final = "ES256"
#: Protected-header ``typ`` of each kind of signed document.
LICENSE_FILE_TYP: Final = "license-file"
MACHINE_ACTIVATION_TYP: Final = "machine-activation"
REVOCATION_LIST_TYP: Final = "revocation-list"
# AUDIT_CHECKPOINT_TYP (the audit log's checkpoints) is declared in .staff, with the audit log.
#: Protected-header ``cty`` of a license file whose payload is encrypted to its license key.
ENCRYPTED_LICENSE_CTY: Final = "license-file+a256gcm"
#: The ``format`` claim of a license file of this schema; another value is refused.
LICENSE_FILE_FORMAT: Final = "tgflow.license-file/1"
#: The ``format`` claim of a revocation list of this schema.
REVOCATION_LIST_FORMAT: Final = "tgflow.revocation-list/1"
#: The armour around a license file's JWS.
LICENSE_ARMOUR_BEGIN: Final = "-----BEGIN TGFLOW LICENSE-----"
LICENSE_ARMOUR_END: Final = "-----END TGFLOW LICENSE-----"
#: A license file may carry the newest revocation list after its license, in this armour.
REVOCATION_ARMOUR_BEGIN: Final = "-----BEGIN TGFLOW REVOCATION LIST-----"
REVOCATION_ARMOUR_END: Final = "-----END TGFLOW REVOCATION LIST-----"
#: Armour header carrying the signing key's public JWK (base64url JSON); used only if pinned.
SIGNING_KEY_ARMOUR_HEADER: Final = "Signing-Key"
#: Armoured lines are this many characters long (the JWS is cut, never changed).
ARMOUR_LINE_LENGTH: Final = 64
#: Encrypted files: AES-256-GCM, 96-bit nonce, key = HKDF-SHA256(license key, no salt, this info).
LICENSE_FILE_ENCRYPTION: Final = "A256GCM"
LICENSE_FILE_KDF: Final = "HKDF-SHA256"
LICENSE_FILE_KDF_INFO: Final = b"tgflow license file A256GCM v1"
LICENSE_FILE_NONCE_BYTES: Final = 12
#: A license key: what the customer types, and what an encrypted file's key is derived from.
LICENSE_KEY_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9-]{14,126}[A-Za-z0-9]$"
#: Product versions are dotted decimal numbers (``2``, ``2.4``, ``2.4.1``).
PRODUCT_VERSION_PATTERN: Final = r"^[0-9]{1,6}(\.[0-9]{1,6}){0,3}$"
#: An install domain: a host name, or ``*.`` + a host name for any of its subdomains.
INSTALL_DOMAIN_PATTERN: Final = (
    r"^(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
)


def license_file_key(license_key: str) -> bytes:
    """The AES-256-GCM key of a license file encrypted to ``license_key`` (HKDF-SHA256)."""
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=LICENSE_FILE_KDF_INFO)
    return hkdf.derive(license_key.encode("utf-8"))


def product_version_tuple(version: str) -> tuple[int, ...]:
    """``"2.4.1"`` → ``(2, 4, 1)``, trailing zeros dropped so that ``2.0`` equals ``2``."""
    if not re.fullmatch(PRODUCT_VERSION_PATTERN, version):
        raise ValueError(f"{version!r} is not a dotted decimal version")
    parts = [int(p) for p in version.split(".")]
    while len(parts) > 1 and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


LicenseKey = Annotated[str, StringConstraints(pattern=LICENSE_KEY_PATTERN)]
ProductVersion = Annotated[str, StringConstraints(pattern=PRODUCT_VERSION_PATTERN)]
InstallDomain = Annotated[str, StringConstraints(max_length=253, pattern=INSTALL_DOMAIN_PATTERN)]
ModuleName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_.-]{0,63}$")]
Limit = Annotated[int, Strict(), Field(ge=0)]
Seconds = Annotated[int, Strict(), Field(ge=0)]


class _SignedClaims(BaseModel):
    # Unknown members are kept out (a newer issuer may add some); known ones are strictly typed.
    model_config = ConfigDict(extra="ignore", frozen=True)


class LicenseLimits(_SignedClaims):
    """What a license allows; ``None`` means no limit."""

    users: Limit | None = None
    departments: Limit | None = None
    integrations: Limit | None = None
    api_rate: Limit | None = Field(default=None, description="API requests per minute")
    messages: Limit | None = Field(default=None, description="messages per calendar month")


class ProductVersionRange(_SignedClaims):
    """Versions of the product the license covers: ``min`` inclusive, ``max`` exclusive."""

    min: ProductVersion
    max: ProductVersion | None = None

    @model_validator(mode="after")
    def _ordered(self) -> ProductVersionRange:
        if self.max is not None and product_version_tuple(self.max) <= product_version_tuple(
            self.min
        ):
            raise ValueError("the version range is empty (max must be above min)")
        return self


class LicenseCustomer(_SignedClaims):
    id: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    name: Annotated[str, StringConstraints(min_length=1, max_length=300)]


class LicenseFileClaims(_SignedClaims):
    """The claims of a license file (the JWS payload, after decryption when encrypted).

    ``valid_until`` ends the paid validity; ``exp`` = ``valid_until`` + grace is when the file
    stops working altogether. Times are seconds since the epoch.
    """

    format: Literal["tgflow.license-file/1"]
    iss: str
    jti: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    iat: Seconds
    nbf: Seconds
    valid_until: Seconds
    exp: Seconds
    license_key: LicenseKey
    file_version: Annotated[int, Strict(), Field(ge=1)]
    customer: LicenseCustomer
    product: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_.-]{0,63}$")]
    plan: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    modules: tuple[ModuleName, ...]
    limits: LicenseLimits
    domain: InstallDomain
    versions: ProductVersionRange

    @model_validator(mode="after")
    def _times_ordered(self) -> LicenseFileClaims:
        if not self.nbf <= self.valid_until <= self.exp:
            raise ValueError("nbf <= valid_until <= exp does not hold")
        return self


class EncryptedLicensePayload(_SignedClaims):
    """The JWS payload of an encrypted license file (``cty`` :data:`ENCRYPTED_LICENSE_CTY`)."""

    enc: Literal["A256GCM"]
    kdf: Literal["HKDF-SHA256"]
    iv: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{16}$")]
    ciphertext: Annotated[str, StringConstraints(min_length=22, pattern=r"^[A-Za-z0-9_-]+$")]


class RevokedLicense(_SignedClaims):
    """One entry of a revocation list: the license's files of ``file_versions`` (``None``: all)."""

    license_key: LicenseKey
    file_versions: tuple[Annotated[int, Strict(), Field(ge=1)], ...] | None = None


class RevocationListClaims(_SignedClaims):
    """A signed revocation list; a newer ``iat`` supersedes, ``next_update`` is when to refetch."""

    format: Literal["tgflow.revocation-list/1"]
    iss: str
    iat: Seconds
    next_update: Seconds
    revoked: tuple[RevokedLicense, ...]
