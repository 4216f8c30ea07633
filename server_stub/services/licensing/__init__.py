"""The license lifecycle for staff (docs/licensing.md, "Licenses: issue, renew, revoke, four
eyes"): issue, renew, upgrade and change (each a new signed version), the four-eyes rule,
suspend, resume and revoke, the history, the files and the public revocation list.

:class:`LicensingService` is the facade routers and the CLI hold; each area is a manager of its
own module. (``services/license.py`` is the end user's ``/license``, another thing.)
"""

from __future__ import annotations

from ...signing import Signer
from ..context import ServiceContext
from .changes import ChangeReason, IssueOrder, LicenseChanges, Money
from .common import LicenseView, license_object, version_state
from .four_eyes import FourEyesRule, FourEyesSettings
from .queries import (
    CURSOR_PATTERN,
    MAX_PAGE,
    LicenseFile,
    LicenseFilter,
    LicensePage,
    LicenseQueries,
)
from .states import LicenseStates
from .terms import Terms, new_license_key
from .transfer import ImportedLicense, LicenseTransfer

__all__ = [
    "CURSOR_PATTERN",
    "MAX_PAGE",
    "ChangeReason",
    "FourEyesRule",
    "ImportedLicense",
    "IssueOrder",
    "LicenseFile",
    "LicenseFilter",
    "LicensePage",
    "LicenseView",
    "LicensingService",
    "Money",
    "Terms",
    "license_object",
    "new_license_key",
    "version_state",
]


class LicensingService:
    def __init__(self, ctx: ServiceContext, signer: Signer) -> None:
        self.changes = LicenseChanges(ctx, signer)
        self.states = LicenseStates(ctx, signer)
        self.queries = LicenseQueries(ctx, signer)
        self.four_eyes = FourEyesSettings(ctx)
        self.transfer = LicenseTransfer(ctx, self.changes)

        self.issue = self.changes.issue
        self.change = self.changes.change
        self.approve = self.changes.approve
        self.reject = self.changes.reject
        self.requests = self.changes.requests
        self.suspend = self.states.suspend
        self.resume = self.states.resume
        self.revoke = self.states.revoke
        self.search = self.queries.search
        self.get = self.queries.get
        self.history = self.queries.history
        self.file = self.queries.file
        self.revocation_list = self.queries.revocation_list
        self.import_licenses = self.transfer.import_licenses
        self.export_licenses = self.transfer.export_licenses
