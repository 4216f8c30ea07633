"""The app marketplace (docs/marketplace.md): backends and their keys, apps, licenses,
installations, entitlement snapshots and the audit trail.

One module per area, each a small manager over the shared :class:`ServiceContext`;
:class:`MarketplaceService` builds them and is the one object callers hold (Anki's ``Collection``
over its managers), so routers, the CLI and the demo call ``services.marketplace.<operation>``
whatever module the operation lives in.

A license's state is never stored as the truth: it is computed from its dates and the injected
clock on every read (:func:`license_state`); see :mod:`.transitions` for how the stored
``status`` follows it, and :mod:`.rows` for the per-backend row lock every write takes.
"""

from __future__ import annotations

from ...marketplace_tokens import MarketplaceTokens
from ..context import ServiceContext
from .apps import Apps
from .audit import CLOCK, OPERATOR, AuditTrail, backend_actor
from .backends import BackendPrincipal, Backends, NewBackend
from .installations import Installations, InstallResult
from .keys import BackendKeys, PublishedKeys
from .licenses import LicenseChange, Licenses
from .reads import CatalogEntry, InstalledEntry, Reads
from .specs import AppSpec
from .state import LicenseView, license_state
from .transitions import Transitions

__all__ = [
    "CLOCK",
    "OPERATOR",
    "AppSpec",
    "BackendPrincipal",
    "CatalogEntry",
    "InstallResult",
    "InstalledEntry",
    "LicenseChange",
    "LicenseView",
    "MarketplaceService",
    "NewBackend",
    "PublishedKeys",
    "backend_actor",
    "license_state",
]


class MarketplaceService:
    """The marketplace's operations, each handed to the manager of its area."""

    def __init__(self, ctx: ServiceContext, tokens: MarketplaceTokens) -> None:
        self.backends = Backends(ctx, tokens)
        self.keys = BackendKeys(ctx)
        self.apps = Apps(ctx)
        self.licenses = Licenses(ctx)
        self.installations = Installations(ctx)
        self.transitions = Transitions(ctx)
        self.reads = Reads(ctx, tokens, self.transitions)
        self.audit = AuditTrail(ctx)

        # Backends and their tokens (operator; the routers' authentication).
        self.create_backend = self.backends.create_backend
        self.reissue_admin_token = self.backends.reissue_admin_token
        self.authenticate_admin = self.backends.authenticate_admin
        self.authenticate_user = self.backends.authenticate_user
        self.issue_user_token = self.backends.issue_user_token
        self.verify_token = self.backends.verify_token
        # A backend's signing keys.
        self.register_key = self.keys.register_key
        self.backend_jwks = self.keys.backend_jwks
        # The catalog's listings (operator).
        self.create_app = self.apps.create_app
        self.update_app = self.apps.update_app
        self.list_apps = self.apps.list_apps
        # Licenses.
        self.request_license = self.licenses.request_license
        self.activate_license = self.licenses.activate_license
        self.revoke_license = self.licenses.revoke_license
        # Installations.
        self.install = self.installations.install
        self.uninstall = self.installations.uninstall
        # Reads.
        self.catalog = self.reads.catalog
        self.installed = self.reads.installed
        self.entitlements = self.reads.entitlements
        self.audit_trail = self.audit.audit_trail
        # The clock's transitions (the periodic sweeper).
        self.settle_due = self.transitions.settle_due
