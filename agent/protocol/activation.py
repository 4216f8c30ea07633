"""The license product API (seed 003, docs/licensing.md "Product API"): what an installation sends
to ``/licenses/activate``, ``/licenses/heartbeat`` and ``GET /licenses/{license_key}``, what it
gets back, and the claims of the signed machine activation.

An installation authenticates with what it holds: the license key (random, ≥ 128 bits) and, after
activation, the activation id bound to its machine fingerprint. Staff revoke through
``POST /licenses/revoke`` with a staff token; the newest signed revocation list is public at
``GET /licenses/revocation-list`` (``application/jose``, a compact JWS).
"""

from __future__ import annotations

from typing import Annotated, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, Strict, StringConstraints

from .core import Fingerprint
from .documents import (
    InstallDomain,
    LicenseKey,
    LicenseLimits,
    ModuleName,
    ProductVersion,
    Seconds,
)

#: The ``format`` claim of a machine activation of this schema.
MACHINE_ACTIVATION_FORMAT: Final = "tgflow.machine-activation/1"
#: Media type of the public revocation list (a compact JWS, RFC 7515 §9.2.1).
REVOCATION_LIST_MEDIA_TYPE: Final = "application/jose"
#: The heartbeat window when a license names none (as Keygen's default): 10 minutes.
DEFAULT_HEARTBEAT_WINDOW_S: Final = 600

#: What the server says about a license: ``active`` (within validity), ``in_grace`` (past
#: ``valid_until``, before ``exp``), ``expired``, ``suspended``, ``revoked``, ``pending``
#: (issued, waiting for an Admin's approval or for payment: not usable yet).
LicenseState = Literal["active", "in_grace", "expired", "suspended", "revoked", "pending"]

ServerId = Annotated[
    str, StringConstraints(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")
]
ActivationId = Annotated[str, StringConstraints(pattern=r"^[0-9a-f-]{36}$")]
FileVersion = Annotated[int, Strict(), Field(ge=1, le=1_000_000)]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Reply(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ReportedError(_Request):
    """An error the installation reports in a heartbeat (shown to staff, never interpreted)."""

    code: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    message: Annotated[str, StringConstraints(max_length=500)] = ""


class ActivateRequest(_Request):
    license_key: LicenseKey
    fingerprint: Fingerprint
    server_id: ServerId = Field(description="the installation's host name or server id")
    product_version: ProductVersion
    domain: InstallDomain | None = Field(
        default=None, description="the host the installation serves; checked against the license"
    )
    modules: tuple[ModuleName, ...] = Field(
        default=(), max_length=64, description="modules the installation enables"
    )
    replace_activation_id: ActivationId | None = Field(
        default=None,
        description="replace this machine in one call: it is deactivated and its slot reused",
    )


class ActivateResponse(_Reply):
    activation_id: str
    #: Compact ES256 JWS, ``typ`` machine-activation (:class:`MachineActivationClaims`).
    activation: str
    #: The newest armoured license file, with the newest revocation list attached.
    license_file: str
    file_version: int
    state: LicenseState
    modules: tuple[str, ...]
    limits: LicenseLimits
    heartbeat_interval_s: int
    heartbeat_window_s: int
    mandatory_min_version: str | None = None


class HeartbeatRequest(_Request):
    license_key: LicenseKey
    activation_id: ActivationId
    fingerprint: Fingerprint
    product_version: ProductVersion
    # Lax like every request integer (JSON Schema admits 2.0); signed claims stay strict.
    file_version: int = Field(
        ge=1, le=1_000_000, description="the version of the file the installation uses"
    )
    modules: tuple[ModuleName, ...] = Field(default=(), max_length=64)
    errors: tuple[ReportedError, ...] = Field(default=(), max_length=20)


class HeartbeatResponse(_Reply):
    state: LicenseState
    #: False when the activation was freed (dead, replaced, deactivated): activate again.
    activation_live: bool
    file_version: int
    #: The newer armoured file when ``file_version`` is above the installation's, else None.
    license_file: str | None = None
    #: The newest signed revocation list (compact JWS), always.
    revocation_list: str
    next_heartbeat_s: int
    mandatory_min_version: str | None = None


class LicenseStatusResponse(_Reply):
    """``GET /licenses/{license_key}``: the periodic check (seed 003, 4.2)."""

    license_key: str
    state: LicenseState
    file_version: int
    product: str
    plan: str
    modules: tuple[str, ...]
    limits: LicenseLimits
    valid_until: int
    grace_until: int
    mandatory_min_version: str | None = None


class RevokeRequest(_Request):
    """``POST /licenses/revoke`` (staff, ``licenses.revoke``)."""

    license_key: LicenseKey
    reason: Annotated[str, StringConstraints(min_length=1, max_length=500)]


class MachineActivationClaims(BaseModel):
    """The claims of a machine activation: a license file version bound to one fingerprint."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    format: Literal["tgflow.machine-activation/1"]
    iss: str
    jti: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    iat: Seconds
    #: The license file's ``exp``: the activation never outlives its file.
    exp: Seconds
    license_key: LicenseKey
    file_version: FileVersion
    activation_id: str
    fingerprint: Fingerprint
    server_id: str
    modules: tuple[ModuleName, ...]
