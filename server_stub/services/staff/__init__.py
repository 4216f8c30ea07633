"""Staff of the backend (docs/licensing.md, "Staff"): roles and the one permission table,
accounts, login with TOTP, sessions, and the signing keys an Admin manages.

:class:`StaffService` builds the managers and is what routers and the CLI hold.
"""

from __future__ import annotations

from ...staff_tokens import StaffTokens
from ..context import ServiceContext
from .accounts import StaffAccounts, TotpEnabled, TotpSetup, count_sealed_secrets
from .keys import KeyAdmin
from .permissions import ROLE_PERMISSIONS, Permission, Role, allowed, totp_required
from .sessions import StaffIssued, StaffPrincipal, StaffSessions, staff_actor
from .totp_vault import TotpKeyUnavailable, open_vault

__all__ = [
    "ROLE_PERMISSIONS",
    "Permission",
    "Role",
    "StaffIssued",
    "StaffPrincipal",
    "StaffService",
    "TotpEnabled",
    "TotpKeyUnavailable",
    "TotpSetup",
    "allowed",
    "staff_actor",
    "totp_required",
]


class StaffService:
    def __init__(self, ctx: ServiceContext, *, read_only: bool = False) -> None:
        """``read_only``: make no TOTP key and encrypt nothing (read-only CLI commands)."""
        self.vault = open_vault(
            ctx.settings, create=not read_only, sealed_secrets=lambda: count_sealed_secrets(ctx)
        )
        self.sessions = StaffSessions(ctx, StaffTokens(ctx.keys, ctx.settings.issuer), self.vault)
        self.accounts = StaffAccounts(ctx, self.sessions, self.vault)
        self.keys = KeyAdmin(ctx)
        if not read_only and self.vault.usable:
            self.accounts.seal_plain_secrets()

        self.login = self.sessions.login
        self.refresh = self.sessions.refresh
        self.logout = self.sessions.logout
        self.authenticate = self.sessions.authenticate
        self.authorize = self.sessions.authorize
        self.create = self.accounts.create
        self.list = self.accounts.list
        self.find = self.accounts.find
        self.disable = self.accounts.disable
        self.reset_2fa = self.accounts.reset_2fa
        self.setup_totp = self.accounts.setup_totp
        self.enable_totp = self.accounts.enable_totp
