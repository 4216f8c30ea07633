"""Offline licensing from signed license files (docs/license-files.md).

- :func:`parse_armour` and :class:`DocumentVerifier`: the armour and the ES256 JWS, verified
  against the pinned ``license`` key with an explicit ``typ`` per kind of document;
- :class:`RevocationStore`: the newest revocation list seen, honoured offline;
- :class:`LicenseFileVerifier`: a license file's validity, grace, domain, version range and
  revocation, with the lease's clock-rollback rule; the result is a typed :class:`License`;
- :class:`LicenseFileStore`: the activated file, re-verified at every check; a newer file
  version replaces it, an older one is refused;
- :class:`OnlineActivation`: online activation (a signed machine activation,
  :func:`verify_machine_activation`) and heartbeats that pick up renewals and revocations.
"""

from __future__ import annotations

from .activation import verify_machine_activation
from .documents import Armoured, DocumentVerifier, VerifiedDocument, parse_armour
from .files import License, LicenseFileVerifier, domain_matches
from .online import HeartbeatOutcome, OnlineActivation
from .revocation import RevocationStore
from .store import LicenseFileStore, NoLicenseFile

__all__ = [
    "Armoured",
    "DocumentVerifier",
    "HeartbeatOutcome",
    "License",
    "LicenseFileStore",
    "LicenseFileVerifier",
    "NoLicenseFile",
    "OnlineActivation",
    "RevocationStore",
    "VerifiedDocument",
    "domain_matches",
    "parse_armour",
    "verify_machine_activation",
]
