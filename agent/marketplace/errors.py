"""The app-side marketplace errors: one family under :class:`MarketplaceError`.

Every class derives from :class:`agent.errors.LicenseError` through :class:`MarketplaceError`, so
an app can catch the whole family at once. The token refusals also derive from the agent's
:class:`agent.errors.TokenRejected` classes (``TokenInvalid``, ``TokenExpired``,
``UntrustedKey``), and carry the same problem-details ``code``: an app serving HTTP can answer
``401 token_invalid`` / ``token_expired`` for them and ``403 forbidden`` for the entitlement
refusals.
"""

from __future__ import annotations

from agent.errors import LicenseError, TokenExpired, TokenInvalid, UntrustedKey
from agent.protocol import ErrorCode


class MarketplaceError(LicenseError):
    """Base of every app-side marketplace failure."""


# --- the User App Access Token ------------------------------------------------------------------


class AppTokenInvalid(MarketplaceError, TokenInvalid):
    """Malformed, badly signed, of the wrong algorithm, type, issuer or audience, or too early."""


class AppTokenExpired(MarketplaceError, TokenExpired):
    """Correctly signed, but past its ``exp`` (beyond the leeway)."""


class UnknownSigningKey(MarketplaceError, UntrustedKey):
    """The issuing backend publishes no usable key with the token's ``kid`` (after any refetch)."""


# --- the entitlement snapshot -------------------------------------------------------------------


class EntitlementError(MarketplaceError):
    """The app may not be used by this backend now; subclasses say why."""

    code = ErrorCode.FORBIDDEN


class BackendNotEntitled(EntitlementError):
    """A valid entitlement snapshot does not list the token's backend."""


class EntitlementsUnavailable(EntitlementError):
    """No valid entitlement snapshot is at hand (never fetched, forged, or expired): fail closed."""


class SnapshotInvalid(MarketplaceError):
    """An entitlement snapshot failed verification (signature, type, audience, app, times)."""

    code = ErrorCode.TOKEN_INVALID
