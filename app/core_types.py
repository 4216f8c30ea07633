"""What :class:`app.core.Core` answers with and raises: the panels' rows and the core's errors.

Apart from ``app.core`` so the view-models can name them without the service layer's imports;
``app.core`` re-exports every name.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from .antispam import AccountStatus
from .catalog import Explained, Reason
from .transports.base import AccountInfo


@dataclass(frozen=True)
class DeviceRow:
    id: str
    name: str | None
    created_at: datetime
    last_seen_at: datetime


@dataclass(frozen=True)
class LicenseFileFacts:
    """What an activated license file says, for the License panel."""

    customer: str
    product: str
    plan: str
    modules: tuple[str, ...]
    #: ``(name, value)`` in display order; ``None`` is "no limit".
    limits: tuple[tuple[str, int | None], ...]
    domain: str
    valid_from: datetime
    valid_until: datetime
    expires_at: datetime
    #: Past the paid validity, working on until :attr:`expires_at`: the panel warns.
    in_grace: bool
    file_version: int
    #: The license key's last four characters only.
    key_tail: str


@dataclass(frozen=True)
class OnlineStatus:
    """The License panel's line about the license server."""

    #: When the server last answered (``None``: not yet on this run).
    checked_at: datetime | None = None
    #: Why the server refused the activation, or the license (translated in the panel).
    refusal: Reason | None = None


@dataclass(frozen=True)
class LicenseSnapshot:
    """The License panel's content."""

    email: str | None
    plan: str | None
    status: str
    #: Whether broadcasts may run; when not, :attr:`reason` says why (in any language).
    usable: bool
    reason: Reason | None
    limit: int
    used: int
    held: int
    remaining: int
    period_end: datetime | None
    lease_expires_at: datetime | None
    devices: tuple[DeviceRow, ...] = ()
    devices_max: int = 0
    #: True when the server could not be reached and this comes from the offline lease.
    offline: bool = False
    #: Set in license-file mode (no account): the file's facts; the quota is this month's.
    license_file: LicenseFileFacts | None = None
    #: License-file mode without a messages limit: :attr:`remaining` means nothing then.
    messages_unlimited: bool = False
    #: License-file mode with a license server: when it last answered, why it refused.
    online: OnlineStatus | None = None


@dataclass(frozen=True)
class AccountRow:
    """An account and its anti-spam state, for the Accounts panel."""

    info: AccountInfo
    status: AccountStatus


class NotSignedIn(RuntimeError):
    """The action needs a license session; sign in first."""


class BroadcastBusy(Explained, RuntimeError):
    """The account already runs a broadcast (one broadcast per account at a time)."""


class LicenseUnusable(Explained, RuntimeError):
    """The license does not allow sending now (inactive, quota used up, offline)."""


class PurchaseRefused(Explained, RuntimeError):
    """A points purchase that cannot go on: the store cannot be reached or refused, the purchase
    ended unpaid (cancelled, rejected, expired), or buying points is not set up here."""
