"""A marketplace app in one page: check the User App Access Token, say who may use the app.

A tenant backend embeds the app in an ``<iframe src="{iframe_url}?token=…">``. The page verifies
the token offline with :class:`agent.marketplace.AppTokenVerifier` (the issuing backend's key
from ``{marketplace}/marketplace/backends/{id}/jwks.json``) and re-validates the backend's
entitlement against the marketplace's signed snapshot (fetched at most every 5 minutes, verified
with the marketplace's pinned ``license`` key). See README.md next to this file.

Run it (``uvicorn --factory examples.marketplace_app.app:app_from_env``) with::

    TGFLOW_APP_MARKETPLACE_URL=https://marketplace.example
    TGFLOW_APP_ID=chat
    TGFLOW_APP_LICENSE_PINS=sha256/…   # `tgflow-server keys pins`, the `license` line
    TGFLOW_APP_CACHE_DIR=/var/cache/chat-app
"""

from __future__ import annotations

import html
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI, Query
from fastapi.responses import HTMLResponse

from agent.clock import Clock
from agent.key_pins import PinnedKeySet
from agent.marketplace import AppTokenVerifier, BackendKeyCache, MarketplaceError

log = logging.getLogger("tgflow.example.marketplace_app")

#: A token in the URL must not leak to other sites through ``Referer`` or a cache.
_PRIVATE_HEADERS = {"Referrer-Policy": "no-referrer", "Cache-Control": "no-store"}


@dataclass(frozen=True)
class AppConfig:
    """What an app developer configures: where the marketplace is, and what to trust there."""

    marketplace_url: str
    app_id: str
    #: Pins (``sha256/…``, comma-separated) of the marketplace's ``license`` signing key.
    license_pins: str
    #: Where the backends' keys and the marketplace's JWKS are cached between restarts.
    cache_dir: Path

    @classmethod
    def from_env(cls) -> AppConfig:
        """Read ``TGFLOW_APP_MARKETPLACE_URL``, ``_ID``, ``_LICENSE_PINS`` and ``_CACHE_DIR``."""
        return cls(
            marketplace_url=os.environ["TGFLOW_APP_MARKETPLACE_URL"],
            app_id=os.environ["TGFLOW_APP_ID"],
            license_pins=os.environ["TGFLOW_APP_LICENSE_PINS"],
            cache_dir=Path(os.environ.get("TGFLOW_APP_CACHE_DIR", ".marketplace-app-cache")),
        )


def build_verifier(config: AppConfig, *, clock: Clock | None = None) -> AppTokenVerifier:
    """The app's verifier: backends' keys from the marketplace, the snapshot key pinned."""
    keys = BackendKeyCache(config.marketplace_url, clock=clock, cache_dir=config.cache_dir / "keys")
    marketplace_key = PinnedKeySet(
        config.marketplace_url, config.license_pins, config.cache_dir / "marketplace", clock=clock
    )
    return AppTokenVerifier(config.app_id, keys, marketplace_key=marketplace_key, clock=clock)


def _page(status: int, message: str) -> HTMLResponse:
    body = (
        "<!doctype html><html><head><meta charset='utf-8'><title>Marketplace app</title></head>"
        f"<body><p id='status'>{html.escape(message)}</p></body></html>"
    )
    return HTMLResponse(body, status_code=status, headers=_PRIVATE_HEADERS)


def create_app(verifier: AppTokenVerifier) -> FastAPI:
    """The app: ``GET /?token=…`` says whether access is granted, and to whom."""
    app = FastAPI(title="Example marketplace app", docs_url=None, redoc_url=None, openapi_url=None)
    app.router.add_event_handler("shutdown", verifier.keys.close)

    @app.get("/", response_class=HTMLResponse)
    def index(token: str = Query(default="")) -> HTMLResponse:
        if not token:
            return _page(401, "Access denied: no token (open the app from your backend)")
        try:
            # verify: signature, issuer's key, audience, times. revalidate: the backend is
            # still entitled according to a snapshot at most 5 minutes old (fails closed).
            access = verifier.revalidate(verifier.verify(token))
        except MarketplaceError as exc:
            log.info("access refused: %s", exc)
            return _page(403, f"Access denied: {exc}")
        return _page(
            200, f"Access granted for user {access.user_id} of backend {access.backend_id}"
        )

    return app


def app_from_env() -> FastAPI:
    """The app configured from the environment (``uvicorn --factory``)."""
    return create_app(build_verifier(AppConfig.from_env()))
