"""Offline activation from a license file: verify it, open it, and decide if it lets us work.

:meth:`LicenseFileVerifier.verify` takes the file's text (and the license key, needed for an
encrypted file) and returns a :class:`License`, or raises, in this order:

1. :class:`TokenInvalid` / :class:`UntrustedKey`: not a genuine license file (armour, header,
   ``typ``, algorithm, pinned key and ``kid``, signature, claims, issuer). A revocation list
   attached to the file is verified and offered to the :class:`RevocationStore` first.
2. :class:`WrongLicenseKey`: encrypted and the key does not open it, or not the key's file.
3. :class:`TamperDetected`: the clock was set back (the lease's rule and its latest time seen,
   :meth:`agent.lease.LeaseStore.check_clock`).
4. :class:`LicenseFileExpired`: before ``nbf`` or after ``exp`` (= validity + grace), with at
   most :data:`agent.protocol.MAX_LEEWAY_SECONDS` of leeway.
5. :class:`LicenseFileRejected` (another product), :class:`DomainMismatch`,
   :class:`VersionNotCovered`, then :class:`LicenseRevoked` (the newest list seen).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import ValidationError

from agent.clock import Clock, SystemClock
from agent.errors import (
    DomainMismatch,
    LicenseFileExpired,
    LicenseFileNotYetValid,
    LicenseFileRejected,
    LicenseRevoked,
    TokenInvalid,
    VersionNotCovered,
    WrongLicenseKey,
)
from agent.lease import LeaseStore
from agent.protocol import (
    ENCRYPTED_LICENSE_CTY,
    LICENSE_FILE_TYP,
    MAX_LEEWAY_SECONDS,
    EncryptedLicensePayload,
    LicenseFileClaims,
    LicenseLimits,
    license_file_key,
    product_version_tuple,
)
from agent.tokens import DEFAULT_ISSUER, DEFAULT_LEEWAY_SECONDS

from .documents import DocumentVerifier, parse_armour
from .revocation import RevocationStore

_WHAT: Final = "license file"


@dataclass(frozen=True)
class License:
    """A verified license file that lets this installation work now."""

    license_key: str
    file_version: int
    customer_id: str
    customer_name: str
    product: str
    plan: str
    modules: frozenset[str]
    limits: LicenseLimits
    domain: str
    min_version: str
    max_version: str | None
    issued_at: datetime
    valid_from: datetime
    #: End of the paid validity; after it the license works on in grace until ``expires_at``.
    valid_until: datetime
    expires_at: datetime
    in_grace: bool
    kid: str

    def has_module(self, module: str) -> bool:
        """Whether the license includes ``module``."""
        return module in self.modules


def domain_matches(licensed: str, installed: str) -> bool:
    """``licensed`` is a host name (exact) or ``*.`` + host name (any subdomain, not itself)."""
    licensed, installed = licensed.lower().rstrip("."), installed.lower().rstrip(".")
    if licensed.startswith("*."):
        # ".example.com" as a suffix: any subdomain, never the bare domain nor "badexample.com".
        return installed.endswith(licensed[1:])
    return licensed == installed


def _when(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class LicenseFileVerifier:
    """Verifies license files for one installation: its product, version and domain."""

    def __init__(
        self,
        documents: DocumentVerifier,
        lease_store: LeaseStore,
        revocations: RevocationStore,
        *,
        product: str,
        product_version: str,
        domain: str,
        issuer: str = DEFAULT_ISSUER,
        clock: Clock | None = None,
        leeway_seconds: int = DEFAULT_LEEWAY_SECONDS,
    ) -> None:
        """Verify for ``product`` at ``product_version`` installed at ``domain``.

        ``lease_store`` supplies the latest time seen (one per installation, shared with the
        lease); pass it the same clock. ``leeway_seconds`` lies within 0..MAX_LEEWAY_SECONDS.
        """
        if not 0 <= leeway_seconds <= MAX_LEEWAY_SECONDS:
            raise ValueError(f"leeway must be between 0 and {MAX_LEEWAY_SECONDS} seconds")
        self._documents = documents
        self._lease_store = lease_store
        self.revocations = revocations
        self.product = product
        self.product_version = product_version_tuple(product_version)
        self.domain = domain
        self.issuer = issuer
        self._clock: Clock = clock or SystemClock()
        self._leeway = leeway_seconds

    def verify(
        self, text: str, license_key: str | None = None, *, now: datetime | None = None
    ) -> License:
        """The license in ``text`` if it lets this installation work at ``now``; see the module."""
        armoured = parse_armour(text)
        if armoured.revocation_jws is not None:
            self.revocations.offer(armoured.revocation_jws, armoured.carried_key)
        document = self._documents.verify(
            armoured.license_jws,
            LICENSE_FILE_TYP,
            what=_WHAT,
            carried_key=armoured.carried_key,
            allowed_cty=frozenset({ENCRYPTED_LICENSE_CTY}),
        )
        payload = document.payload
        if document.header.get("cty") == ENCRYPTED_LICENSE_CTY:
            payload = self._decrypt(payload, license_key)
        try:
            claims = LicenseFileClaims.model_validate_json(payload)
        except ValidationError as exc:
            raise TokenInvalid(f"the license file has malformed claims: {exc}") from exc
        if claims.iss != self.issuer:
            raise TokenInvalid(f"the license file was issued by {claims.iss!r}")
        if license_key is not None and claims.license_key != license_key:
            raise WrongLicenseKey("this license file is for another license key")
        when = self._lease_store.check_clock(now if now is not None else self._clock.now())
        seconds = when.timestamp()
        if claims.iat > seconds + self._leeway:
            raise TokenInvalid("the license file was issued in the future; check the clock")
        # The signed issue time is a time seen that nobody can edit out of license.json.
        self._lease_store.observe_time(_when(claims.iat))
        self._check_times(claims, seconds)
        self._check_installation(claims)
        if self.revocations.is_revoked(claims.license_key, claims.file_version):
            raise LicenseRevoked(
                f"license {claims.license_key} (file version {claims.file_version}) is revoked"
            )
        return License(
            license_key=claims.license_key,
            file_version=claims.file_version,
            customer_id=claims.customer.id,
            customer_name=claims.customer.name,
            product=claims.product,
            plan=claims.plan,
            modules=frozenset(claims.modules),
            limits=claims.limits,
            domain=claims.domain,
            min_version=claims.versions.min,
            max_version=claims.versions.max,
            issued_at=_when(claims.iat),
            valid_from=_when(claims.nbf),
            valid_until=_when(claims.valid_until),
            expires_at=_when(claims.exp),
            in_grace=seconds > claims.valid_until,
            kid=document.key.kid,
        )

    def _decrypt(self, payload: bytes, license_key: str | None) -> bytes:
        if license_key is None:
            raise WrongLicenseKey("this license file is encrypted; its license key is needed")
        try:
            envelope = EncryptedLicensePayload.model_validate_json(payload)
            nonce, sealed = _b64url_decode(envelope.iv), _b64url_decode(envelope.ciphertext)
        except (ValidationError, ValueError, binascii.Error) as exc:
            raise TokenInvalid(f"the encrypted license file is malformed: {exc}") from exc
        try:
            return AESGCM(license_file_key(license_key)).decrypt(nonce, sealed, None)
        except InvalidTag:
            raise WrongLicenseKey("the license key does not open this license file") from None

    def _check_times(self, claims: LicenseFileClaims, seconds: float) -> None:
        if seconds < claims.nbf - self._leeway:
            raise LicenseFileNotYetValid(
                f"the license is not valid before {_when(claims.nbf).isoformat()}"
            )
        if seconds > claims.exp + self._leeway:
            raise LicenseFileExpired(
                f"the license expired on {_when(claims.valid_until).isoformat()} and its grace "
                f"ended on {_when(claims.exp).isoformat()}; load a renewed license file"
            )

    def _check_installation(self, claims: LicenseFileClaims) -> None:
        if claims.product != self.product:
            raise LicenseFileRejected(
                f"the license is for {claims.product!r}, not {self.product!r}"
            )
        if not domain_matches(claims.domain, self.domain):
            raise DomainMismatch(
                f"the license is for domain {claims.domain!r}, not {self.domain!r}"
            )
        low = product_version_tuple(claims.versions.min)
        high = None if claims.versions.max is None else product_version_tuple(claims.versions.max)
        if self.product_version < low or (high is not None and self.product_version >= high):
            covered = f">= {claims.versions.min}" + (
                f", < {claims.versions.max}" if claims.versions.max else ""
            )
            raise VersionNotCovered(f"the license covers versions {covered}, not this one")
