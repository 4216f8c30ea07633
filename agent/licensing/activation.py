"""Verifying a machine activation: the server's signed statement that one license file version
is activated on this machine (``typ`` machine-activation, docs/license-files.md).

The rules are every signed document's (:class:`DocumentVerifier`: ES256 named, pinned key,
``typ``), then the claims: ``format``, ``iss``, the license key asked for, this machine's
fingerprint, and ``exp`` (the license file's own end) not passed.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from agent.errors import LicenseFileExpired, TokenInvalid
from agent.protocol import MACHINE_ACTIVATION_TYP, MachineActivationClaims

from .documents import DocumentVerifier

_WHAT = "machine activation"


def verify_machine_activation(
    documents: DocumentVerifier,
    jws: str,
    *,
    issuer: str,
    license_key: str,
    fingerprint: str,
    now: datetime,
    leeway_seconds: int = 30,
    carried_key: Mapping[str, Any] | None = None,
) -> MachineActivationClaims:
    """The claims of ``jws`` if it activates ``license_key`` on the machine ``fingerprint``.

    ``carried_key`` is the Signing-Key of the license file that came with it (used only when
    pinned). Raises :class:`TokenInvalid` / :class:`UntrustedKey` for anything not genuine or
    not for this machine, :class:`LicenseFileExpired` past its ``exp``.
    """
    claims = documents.verify_claims(
        jws,
        MACHINE_ACTIVATION_TYP,
        MachineActivationClaims,
        what=_WHAT,
        issuer=issuer,
        carried_key=carried_key,
    )
    if claims.license_key != license_key:
        raise TokenInvalid(f"the {_WHAT} is for another license key")
    if claims.fingerprint != fingerprint:
        raise TokenInvalid(f"the {_WHAT} is for another machine")
    if now.timestamp() > claims.exp + leeway_seconds:
        raise LicenseFileExpired(f"the {_WHAT} expired with its license file")
    return claims
