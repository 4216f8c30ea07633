"""The terms of one license version: what staff decide, checked once here, kept as JSON on the
version row and as columns on the license (the in-force version).

The field names are the :class:`~server_stub.portal_models.License` columns they land in, so a
version's terms move onto the license by name and nothing maps one to the other twice.
"""

from __future__ import annotations

import base64
import ipaddress
import secrets
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from agent.protocol import LicenseLimits, product_version_tuple

from ...errors import ValidationFailed
from ...portal_models import License

#: A license's dates stay inside these years: a file's times are unsigned epoch seconds, and a
#: date beyond them is a typing error rather than a plan.
EARLIEST: Final = datetime(2000, 1, 1, tzinfo=UTC)
LATEST: Final = datetime(2200, 1, 1, tzinfo=UTC)
MAX_IP_RANGES: Final = 64
#: Random bytes of a license key: 160 bits (≥ 128 is what an encrypted file's key needs).
KEY_BYTES: Final = 20
KEY_PREFIX: Final = "TGF"


@dataclass(frozen=True)
class Terms:
    """Everything a version decides; ``None`` in a limit means no limit."""

    plan: str
    modules: tuple[str, ...]
    #: ``LicenseLimits`` as a dict.
    limits: dict[str, int | None]
    valid_from: datetime
    valid_until: datetime
    grace_days: int
    domain: str
    min_version: str
    max_version: str | None
    mandatory_min_version: str | None
    encrypted: bool
    max_activations: int | None
    activations_per_hour: int | None
    checkouts_per_hour: int | None
    ip_ranges: tuple[str, ...]
    heartbeat_window_s: int

    def to_json(self) -> dict[str, Any]:
        value = asdict(self)
        value["modules"] = list(self.modules)
        value["ip_ranges"] = list(self.ip_ranges)
        value["valid_from"] = self.valid_from.isoformat()
        value["valid_until"] = self.valid_until.isoformat()
        return value

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> Terms:
        known = {f.name for f in fields(cls)}
        items = {k: v for k, v in value.items() if k in known}
        items["modules"] = tuple(items["modules"])
        items["ip_ranges"] = tuple(items["ip_ranges"])
        items["valid_from"] = datetime.fromisoformat(items["valid_from"])
        items["valid_until"] = datetime.fromisoformat(items["valid_until"])
        return cls(**items)

    @classmethod
    def of_license(cls, lic: License) -> Terms:
        items = {f.name: getattr(lic, f.name) for f in fields(cls)}
        items["modules"] = tuple(items["modules"])
        items["ip_ranges"] = tuple(items["ip_ranges"])
        items["limits"] = dict(items["limits"])
        return cls(**items)

    def apply_to(self, lic: License) -> None:
        """Make these the license's in-force terms."""
        for f in fields(self):
            value = getattr(self, f.name)
            setattr(lic, f.name, list(value) if isinstance(value, tuple) else value)

    @property
    def grace(self) -> timedelta:
        return timedelta(days=self.grace_days)

    @property
    def license_limits(self) -> LicenseLimits:
        return LicenseLimits(**self.limits)


def new_license_key() -> str:
    """A random, readable license key: ``TGF-`` and eight groups of four base32 characters."""
    text = base64.b32encode(secrets.token_bytes(KEY_BYTES)).decode("ascii").rstrip("=")
    return "-".join([KEY_PREFIX, *(text[i : i + 4] for i in range(0, len(text), 4))])


def normalise_ip_ranges(ranges: tuple[str, ...]) -> tuple[str, ...]:
    """CIDR ranges in their network form (``10.1.2.3/8`` → ``10.0.0.0/8``), deduplicated."""
    if len(ranges) > MAX_IP_RANGES:
        raise ValidationFailed(f"at most {MAX_IP_RANGES} IP ranges")
    out: list[str] = []
    for text in ranges:
        try:
            network = ipaddress.ip_network(text.strip(), strict=False)
        except ValueError:
            raise ValidationFailed(f"{text[:64]!r} is not an IP range (CIDR)") from None
        if str(network) not in out:
            out.append(str(network))
    return tuple(out)


def check(terms: Terms, *, now: datetime) -> Terms:
    """``terms`` if they make sense together (the shapes were checked at the edge), the IP ranges
    normalised; else :class:`ValidationFailed` naming what is wrong."""
    for name in ("valid_from", "valid_until"):
        when: datetime = getattr(terms, name)
        if when.tzinfo is None or not EARLIEST <= when < LATEST:
            raise ValidationFailed(f"{name} must be a time with a zone between 2000 and 2199")
    if terms.valid_until <= terms.valid_from:
        raise ValidationFailed("valid_until must be after valid_from")
    if terms.valid_until + terms.grace <= now:
        raise ValidationFailed("the license would already be over (valid_until + grace is past)")
    low = product_version_tuple(terms.min_version)
    if terms.max_version is not None and product_version_tuple(terms.max_version) <= low:
        raise ValidationFailed("the version range is empty: max_version must be above min_version")
    if terms.mandatory_min_version is not None:
        required = product_version_tuple(terms.mandatory_min_version)
        above_max = terms.max_version is not None and required >= product_version_tuple(
            terms.max_version
        )
        if required < low or above_max:
            raise ValidationFailed("mandatory_min_version must lie within the version range")
    if terms.heartbeat_window_s < 60:
        raise ValidationFailed("heartbeat_window_s must be at least 60 seconds")
    return Terms(
        **{
            **{f.name: getattr(terms, f.name) for f in fields(terms)},
            "modules": tuple(sorted(set(terms.modules))),
            "ip_ranges": normalise_ip_ranges(terms.ip_ranges),
            "domain": terms.domain.lower(),
        }
    )
