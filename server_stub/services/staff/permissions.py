"""Seed 003's staff roles and the ONE table of what each may do (docs/licensing.md, "Roles").

Every operator endpoint names one :class:`Permission`; a role may call it when the permission is in
:data:`ROLE_PERMISSIONS`. The tests generate the role matrix from this table, and whether a role
must use TOTP follows from it too (:func:`totp_required`), so nothing here is stated twice.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final


class Role(StrEnum):
    ADMIN = "admin"
    SALES = "sales"
    IMPLEMENTATION = "implementation"
    SUPPORT = "support"
    AUDIT = "audit"


class Permission(StrEnum):
    #: One's own account: profile, TOTP enrolment, logout.
    SELF = "staff.self"
    STAFF_MANAGE = "staff.manage"
    KEYS_MANAGE = "keys.manage"
    SETTINGS_MANAGE = "settings.manage"
    AUDIT_READ = "audit.read"
    CLIENTS_READ = "clients.read"
    CLIENTS_WRITE = "clients.write"
    CONTRACTS_READ = "contracts.read"
    CONTRACTS_WRITE = "contracts.write"
    PAYMENTS_READ = "payments.read"
    LICENSES_READ = "licenses.read"
    LICENSES_ISSUE = "licenses.issue"
    LICENSES_APPROVE = "licenses.approve"
    LICENSES_REVOKE = "licenses.revoke"
    ACTIVATIONS_READ = "activations.read"
    ACTIVATIONS_ISSUE = "activations.issue"
    NOTES_WRITE = "notes.write"
    REPORTS_READ = "reports.read"
    #: Billing: plans, subscriptions, invoices and payments (read); the plans' catalogue (write).
    BILLING_READ = "billing.read"
    BILLING_PLANS_WRITE = "billing.plans.write"
    #: Money back to a customer through the provider (Admin only).
    BILLING_REFUND = "billing.refund"
    #: The points wallets: balances and histories (read); an operator's adjustment (Admin only).
    POINTS_READ = "points.read"
    POINTS_ADJUST = "points.adjust"
    #: The store's product catalogue (what a store purchase grants); read with ``billing.read``.
    STORE_PRODUCTS_WRITE = "store.products.write"


P = Permission

#: What each role may do. Seed 003: Admin everything; Sales creates clients, issues licenses,
#: sees payments, requests renewals; Implementation sees configurations, generates activations,
#: monitors installations; Support sees clients, licenses and statuses and writes notes, never
#: changes keys; Audit reads contracts, the history of operations and reports, nothing else.
ROLE_PERMISSIONS: Final[dict[Role, frozenset[Permission]]] = {
    Role.ADMIN: frozenset(Permission),
    Role.SALES: frozenset(
        {
            P.SELF,
            P.CLIENTS_READ,
            P.CLIENTS_WRITE,
            P.CONTRACTS_READ,
            P.CONTRACTS_WRITE,
            P.PAYMENTS_READ,
            P.LICENSES_READ,
            P.LICENSES_ISSUE,
            P.ACTIVATIONS_READ,
            P.NOTES_WRITE,
            P.REPORTS_READ,
            P.BILLING_READ,
            P.POINTS_READ,
        }
    ),
    Role.IMPLEMENTATION: frozenset(
        {
            P.SELF,
            P.CLIENTS_READ,
            P.LICENSES_READ,
            P.ACTIVATIONS_READ,
            P.ACTIVATIONS_ISSUE,
            P.NOTES_WRITE,
        }
    ),
    Role.SUPPORT: frozenset(
        {
            P.SELF,
            P.CLIENTS_READ,
            P.LICENSES_READ,
            P.ACTIVATIONS_READ,
            P.NOTES_WRITE,
            P.BILLING_READ,
            P.POINTS_READ,
        }
    ),
    Role.AUDIT: frozenset(
        {
            P.SELF,
            P.CONTRACTS_READ,
            P.PAYMENTS_READ,
            P.AUDIT_READ,
            P.REPORTS_READ,
            P.BILLING_READ,
            P.POINTS_READ,
        }
    ),
}

#: Permissions that sign something with the server's keys or change who may do what: a role
#: holding any of them must log in with TOTP.
SIGNING_PERMISSIONS: Final = frozenset(
    {
        P.STAFF_MANAGE,
        P.KEYS_MANAGE,
        P.SETTINGS_MANAGE,
        P.LICENSES_ISSUE,
        P.LICENSES_APPROVE,
        P.LICENSES_REVOKE,
        P.ACTIVATIONS_ISSUE,
    }
)


def totp_required(role: Role) -> bool:
    """Admin, and any role that can sign licenses or activations, must use TOTP."""
    return bool(ROLE_PERMISSIONS[role] & SIGNING_PERMISSIONS)


def allowed(role: Role, permission: Permission) -> bool:
    return permission in ROLE_PERMISSIONS[role]
