"""The app side of the marketplace (docs/marketplace.md, "App side"; docs/agent.md).

- :mod:`agent.marketplace.jwks` — :class:`BackendKeyCache`, the tenant backends' public keys;
- :mod:`agent.marketplace.verifier` — :class:`AppTokenVerifier`: verify a User App Access Token
  offline, re-validate the backend's entitlement against the marketplace's signed snapshot;
- :mod:`agent.marketplace.minting` — :func:`mint_app_token` and :func:`public_jwk` for a backend;
- :mod:`agent.marketplace.errors` — the :class:`MarketplaceError` family.

Qt-free, like the rest of ``agent``.
"""

from agent.marketplace.errors import (
    AppTokenExpired,
    AppTokenInvalid,
    BackendNotEntitled,
    EntitlementError,
    EntitlementsUnavailable,
    MarketplaceError,
    SnapshotInvalid,
    UnknownSigningKey,
)
from agent.marketplace.jwks import BackendKey, BackendKeyCache
from agent.marketplace.minting import key_id, mint_app_token, public_jwk
from agent.marketplace.verifier import AppAccess, AppTokenVerifier, EntitlementSnapshot

__all__ = [
    "AppAccess",
    "AppTokenExpired",
    "AppTokenInvalid",
    "AppTokenVerifier",
    "BackendKey",
    "BackendKeyCache",
    "BackendNotEntitled",
    "EntitlementError",
    "EntitlementSnapshot",
    "EntitlementsUnavailable",
    "MarketplaceError",
    "SnapshotInvalid",
    "UnknownSigningKey",
    "key_id",
    "mint_app_token",
    "public_jwk",
]
