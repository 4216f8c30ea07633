"""Request and response bodies of the staff license endpoints (``routers/portal_licenses.py``).

Shapes and sizes are checked here; what the terms mean together (dates in order, a non-empty
version range, modules of the product) is the service's (``services/licensing/terms.py``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StringConstraints,
)

from agent.protocol import (
    DEFAULT_HEARTBEAT_WINDOW_S,
    INSTALL_DOMAIN_PATTERN,
    LicenseLimits,
    ModuleName,
    ProductVersion,
    Rfc3339DateTime,
)

from .wire_numbers import json_integer

#: Upper bounds: large enough for any real license, small enough for every column and claim.
MAX_LIMIT = 2**31 - 1
MAX_AMOUNT_MINOR = 10**15


Plan = Literal["basic", "advanced", "enterprise"]
Ref = Annotated[str, StringConstraints(min_length=1, max_length=128)]
Count = Annotated[int, Field(ge=0, le=MAX_LIMIT), BeforeValidator(json_integer)]
PerHour = Annotated[int, Field(ge=1, le=1_000_000), BeforeValidator(json_integer)]
Activations = Annotated[int, Field(ge=1, le=1_000_000), BeforeValidator(json_integer)]
GraceDays = Annotated[int, Field(ge=0, le=3650), BeforeValidator(json_integer)]
HeartbeatWindow = Annotated[int, Field(ge=60, le=30 * 86400), BeforeValidator(json_integer)]
AmountMinor = Annotated[int, Field(ge=0, le=MAX_AMOUNT_MINOR), BeforeValidator(json_integer)]
Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
Note = Annotated[str, StringConstraints(max_length=500)]
Reason = Annotated[str, StringConstraints(min_length=1, max_length=500)]
Cidr = Annotated[str, StringConstraints(min_length=1, max_length=64)]

#: The install domain as staff may type it (any case); stored lower-case, as files carry it.
Domain = Annotated[
    str,
    StringConstraints(
        max_length=253, pattern=INSTALL_DOMAIN_PATTERN.replace("a-z0-9", "a-zA-Z0-9")
    ),
    AfterValidator(str.lower),
]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LimitsIn(_In):
    """What the license allows; a missing or null limit means no limit."""

    users: Count | None = None
    departments: Count | None = None
    integrations: Count | None = None
    api_rate: Count | None = Field(default=None, description="API requests per minute")
    messages: Count | None = Field(default=None, description="messages per calendar month")

    def as_dict(self) -> dict[str, int | None]:
        return LicenseLimits(**self.model_dump()).model_dump()


class _MoneyIn(_In):
    amount_minor: AmountMinor | None = Field(
        default=None, description="the amount in minor units (four-eyes threshold, sales report)"
    )
    currency: Currency | None = None
    note: Note | None = Field(default=None, description="the invoice: its number or a link")


class _InstallationIn(_MoneyIn):
    """Terms that bind installations: file encryption and the built-in activation limits."""

    encrypted: StrictBool = False
    max_activations: Activations | None = None
    activations_per_hour: PerHour | None = None
    checkouts_per_hour: PerHour | None = None
    ip_ranges: list[Cidr] = Field(default_factory=list, max_length=64)
    heartbeat_window_s: HeartbeatWindow = DEFAULT_HEARTBEAT_WINDOW_S


class IssueIn(_InstallationIn):
    client_id: Ref
    contract_id: Ref | None = None
    product_id: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    plan: Plan
    modules: list[ModuleName] = Field(default_factory=list, max_length=64)
    limits: LimitsIn = Field(default_factory=LimitsIn)
    valid_from: Rfc3339DateTime
    valid_until: Rfc3339DateTime
    grace_days: GraceDays = 0
    domain: Domain
    min_version: ProductVersion
    max_version: ProductVersion | None = Field(default=None, description="exclusive")
    mandatory_min_version: ProductVersion | None = None


class RenewIn(_MoneyIn):
    valid_until: Rfc3339DateTime
    valid_from: Rfc3339DateTime | None = Field(default=None, description="default: unchanged")
    grace_days: GraceDays = Field(default=0, description="default: unchanged")


class UpgradeIn(_MoneyIn):
    """Absent fields stay as they are; ``limits`` replaces the whole set."""

    plan: Plan = "basic"
    modules: list[ModuleName] = Field(default_factory=list, max_length=64)
    limits: LimitsIn = Field(default_factory=LimitsIn)


class ChangeIn(_InstallationIn):
    """Absent fields stay as they are; ``null`` clears a nullable one."""

    domain: Domain = ""
    min_version: ProductVersion = "0"
    max_version: ProductVersion | None = None
    mandatory_min_version: ProductVersion | None = None
    grace_days: GraceDays = 0


class ReasonIn(_In):
    reason: Reason


class FourEyesIn(_In):
    """The whole rule: every field is required, so a PUT never half-sets it."""

    enabled: StrictBool
    plans: list[Plan] = Field(max_length=3)
    amount_thresholds: dict[Currency, AmountMinor] = Field(
        max_length=50,
        description="currency → amount (minor units) from which approval is needed",
        # Keys are currencies only (pydantic states just ``patternProperties``).
        json_schema_extra={"additionalProperties": False},
    )


class FourEyesOut(BaseModel):
    enabled: StrictBool
    plans: list[str]
    amount_thresholds: dict[str, int]


class VersionOut(BaseModel):
    id: str
    version: int
    reason: str
    #: ``pending`` (awaits an Admin), ``rejected``, ``signed``.
    state: Literal["pending", "rejected", "signed"]
    terms: dict[str, Any]
    amount_minor: int | None
    currency: str | None
    note: str | None
    requested_by: str
    requested_at: datetime
    approved_by: str | None
    approved_at: datetime | None
    rejected_by: str | None
    rejected_at: datetime | None
    rejection_reason: str | None
    checksum: str | None = Field(description="SHA-256 (hex) of the file's UTF-8 text")
    kid: str | None
    signed_at: datetime | None


class LicenseOut(BaseModel):
    id: str
    license_key: str
    client_id: str
    client_name: str | None = None
    contract_id: str | None
    product_id: str
    plan: str
    modules: list[str]
    limits: dict[str, int | None]
    valid_from: datetime
    valid_until: datetime
    grace_days: int
    domain: str
    min_version: str
    max_version: str | None
    mandatory_min_version: str | None
    encrypted: bool
    status: str
    status_reason: str | None
    version: int = Field(description="the version in force (0 while the first awaits approval)")
    max_activations: int | None
    activations_per_hour: int | None
    checkouts_per_hour: int | None
    ip_ranges: list[str]
    heartbeat_window_s: int
    created_by: str
    created_at: datetime
    updated_at: datetime
    suspended_at: datetime | None
    revoked_at: datetime | None
    current: VersionOut | None = None
    pending: VersionOut | None = Field(default=None, description="a request awaiting approval")


class LicensePageOut(BaseModel):
    licenses: list[LicenseOut]
    next_cursor: str | None


class HistoryOut(BaseModel):
    license_id: str
    license_key: str
    version: int
    versions: list[VersionOut]


class RequestOut(BaseModel):
    """A pending request with the license it belongs to."""

    request: VersionOut
    license_id: str
    license_key: str
    client_id: str
    status: str


class ImportedOut(BaseModel):
    """A license an import issued: the file's row, the license, whether it awaits an Admin."""

    row: int
    id: str
    status: str
    pending_approval: bool


class LicenseImportOut(BaseModel):
    """What an import issued (keys are not echoed: download each license's file)."""

    imported: int
    pending_approval: int
    licenses: list[ImportedOut]
