"""The constants of the marketplace contract the app side relies on (docs/marketplace.md).

They are kept here, next to their only users on the agent side, rather than in
``agent.protocol``; the values are those of the contract's token table and HTTP section.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Final, TypeGuard

#: The one algorithm of both the User App Access Token and the entitlement snapshot.
APP_ACCESS_ALG: Final = "ES256"
ENTITLEMENTS_ALG: Final = "ES256"

#: ``typ`` claims: a token of one type never passes as another.
APP_ACCESS_TYP: Final = "app-access"
ENTITLEMENTS_TYP: Final = "entitlements"

#: ``aud`` of the entitlement snapshot (the User App Access Token's ``aud`` is the app id).
ENTITLEMENTS_AUDIENCE: Final = "tgflow-marketplace-entitlements"

#: A User App Access Token lives at most this long (``exp - iat``).
MAX_APP_TOKEN_TTL: Final = timedelta(minutes=30)
#: The largest clock leeway the app-side verifier allows, in seconds.
MAX_APP_LEEWAY_SECONDS: Final = 10

#: Public endpoints of the marketplace, relative to its base URL.
BACKEND_JWKS_PATH: Final = "/marketplace/backends/{backend_id}/jwks.json"
ENTITLEMENTS_PATH: Final = "/marketplace/apps/{app_id}/entitlements"

#: What a backend id or an app id may look like on the app side. Both come from outside (the
#: token's ``iss``, the app's configuration) and are placed in URL paths, so anything that could
#: change the path (``/``, ``..``, ``%``, ``?``) is refused before any request.
_ID_PATTERN: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._~-]{0,127}")


def is_valid_id(value: object) -> TypeGuard[str]:
    """Whether ``value`` is a string usable as a backend id or an app id (1–128 URL-safe chars)."""
    return isinstance(value, str) and _ID_PATTERN.fullmatch(value) is not None
