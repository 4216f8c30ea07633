"""The checks of the product API that need no database: a license's state, the IP ranges, the
domain, the version range and the modules (docs/licensing.md, "Product API").

The domain rule is the agent's own (:func:`agent.licensing.files.domain_matches`), so the server
never accepts an installation the file it hands out would refuse.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from agent.licensing.files import domain_matches
from agent.protocol import LicenseState, product_version_tuple

from ...errors import Forbidden, LicenseInactive
from ...portal_models import License

#: Why a license in each refused state cannot be used (the problem's ``detail``).
_INACTIVE_DETAIL: dict[str, str] = {
    "revoked": "the license is revoked",
    "suspended": "the license is suspended",
    "expired": "the license is expired (past its validity and grace)",
}


def grace_until(license_row: License) -> datetime:
    """The end of the grace: the license file's ``exp``."""
    return license_row.valid_until + timedelta(days=license_row.grace_days)


def license_state(license_row: License, paid: bool, now: datetime) -> LicenseState:
    """What the server says about ``license_row`` at ``now``; ``paid``: its contract's status.

    Revoked and suspended win over the dates; a license waiting for approval, for its first
    signed file or for payment is ``pending``.
    """
    if license_row.status == "revoked":
        return "revoked"
    if license_row.status == "suspended":
        return "suspended"
    if license_row.status == "pending_approval" or license_row.version < 1 or not paid:
        return "pending"
    if now > grace_until(license_row):
        return "expired"
    if now > license_row.valid_until:
        return "in_grace"
    return "active"


def require_usable(license_row: License, paid: bool, now: datetime) -> LicenseState:
    """The state, or :class:`LicenseInactive` naming why the license cannot be activated."""
    state = license_state(license_row, paid, now)
    if state in _INACTIVE_DETAIL:
        raise LicenseInactive(_INACTIVE_DETAIL[state])
    if state == "pending":
        if license_row.status == "pending_approval":
            raise LicenseInactive("the license is waiting for an administrator's approval")
        if not paid:
            raise LicenseInactive("the license is awaiting payment of its contract")
        raise LicenseInactive("the license has no signed license file yet")
    if now < license_row.valid_from:
        raise LicenseInactive("the license is not valid yet")
    return state


def ip_allowed(ip: str, ranges: Iterable[str]) -> bool:
    """Whether ``ip`` lies in one of the CIDR ``ranges`` (no ranges: anywhere)."""
    networks = list(ranges)
    if not networks:
        return True
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False  # "unknown" (no peer address) is in no range
    for network in networks:
        try:
            if address in ipaddress.ip_network(network, strict=False):
                return True
        except ValueError:
            continue  # a malformed range admits nobody rather than everybody
    return False


def check_installation(
    license_row: License, domain: str | None, product_version: str, modules: Sequence[str]
) -> None:
    """The installation must be within the license: domain, version range and modules."""
    if domain is None or not domain_matches(license_row.domain, domain):
        raise Forbidden(f"the license is for domain {license_row.domain!r}, not {domain!r}")
    version = product_version_tuple(product_version)
    low = product_version_tuple(license_row.min_version)
    high = license_row.max_version
    if version < low or (high is not None and version >= product_version_tuple(high)):
        covered = f">= {license_row.min_version}" + (f", < {high}" if high else "")
        raise Forbidden(f"the license covers versions {covered}, not {product_version}")
    extra = sorted(set(modules) - set(license_row.modules))
    if extra:
        raise Forbidden(f"the license does not include the modules {', '.join(extra)}")
