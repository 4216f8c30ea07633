"""The constants of the marketplace contract the app side relies on (docs/marketplace.md).

The token formats come from :mod:`agent.protocol` (shared with the server); the public paths,
the app side's leeway limit and the id rule are the app side's own.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Final, TypeGuard

from agent import protocol

# The token formats are the wire contract's (agent.protocol); re-exported for the app side.
APP_ACCESS_ALG: Final = protocol.APP_ACCESS_ALG
ENTITLEMENTS_ALG: Final = protocol.ENTITLEMENTS_ALG
APP_ACCESS_TYP: Final = protocol.APP_ACCESS_TYP
ENTITLEMENTS_TYP: Final = protocol.ENTITLEMENTS_TYP
ENTITLEMENTS_AUDIENCE: Final = protocol.ENTITLEMENTS_AUDIENCE
#: A User App Access Token lives at most this long (``exp - iat``).
MAX_APP_TOKEN_TTL: Final = timedelta(seconds=protocol.APP_ACCESS_TOKEN_TTL_SECONDS)
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
