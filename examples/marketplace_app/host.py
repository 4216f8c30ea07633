"""A tenant backend's page that shows an installed marketplace app in an iframe.

The tenant side of the contract, reduced to one route: ``GET /apps/{app_id}`` asks the
marketplace which apps this backend has installed (``POST /marketplace/user-tokens`` with the
Backend Admin Token, then ``GET /marketplace/installed``), mints a User App Access Token for the
signed-in user with the backend's own key (:func:`agent.marketplace.mint_app_token`) and embeds
the app's ``iframe_url`` with ``?token=…``. A real backend would know its user from its session;
here the user is configured.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import httpx
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi import FastAPI
from fastapi.responses import HTMLResponse

from agent.clock import Clock
from agent.marketplace import mint_app_token


@dataclass(frozen=True)
class HostConfig:
    """A registered tenant backend: its id, Backend Admin Token and signing key."""

    marketplace_url: str
    backend_id: str
    admin_token: str
    private_key: ec.EllipticCurvePrivateKey
    #: The user the demo signs in as.
    user_id: str = "demo-user"


def with_token(iframe_url: str, token: str) -> str:
    """``iframe_url`` with ``token=…`` added to its query."""
    parts = urlsplit(iframe_url)
    query = f"{parts.query}&" if parts.query else ""
    return urlunsplit(parts._replace(query=query + urlencode({"token": token})))


def _page(status: int, body: str) -> HTMLResponse:
    document = (
        "<!doctype html><html><head><meta charset='utf-8'><title>Tenant backend</title></head>"
        f"<body>{body}</body></html>"
    )
    headers = {"Referrer-Policy": "no-referrer", "Cache-Control": "no-store"}
    return HTMLResponse(document, status_code=status, headers=headers)


def create_host_app(
    config: HostConfig, *, clock: Clock | None = None, http: httpx.Client | None = None
) -> FastAPI:
    """The host: ``GET /apps/{app_id}`` embeds that installed app, with a fresh token."""
    client = http or httpx.Client(base_url=config.marketplace_url, timeout=10)
    app = FastAPI(title="Example tenant host", docs_url=None, redoc_url=None, openapi_url=None)
    if http is None:
        app.router.add_event_handler("shutdown", client.close)

    def installed_apps() -> list[dict[str, Any]]:
        admin = {"Authorization": f"Bearer {config.admin_token}"}
        answer = client.post("/marketplace/user-tokens", headers=admin)
        answer.raise_for_status()
        user = {"Authorization": f"Bearer {answer.json()['token']}"}
        answer = client.get("/marketplace/installed", headers=user)
        answer.raise_for_status()
        apps: list[dict[str, Any]] = answer.json()["apps"]
        return apps

    @app.get("/apps/{app_id}", response_class=HTMLResponse)
    def show_app(app_id: str) -> HTMLResponse:
        entry = next((a for a in installed_apps() if a["id"] == app_id), None)
        if entry is None:
            return _page(404, f"<p id='status'>{html.escape(app_id)} is not installed</p>")
        token = mint_app_token(
            config.private_key,
            backend_id=config.backend_id,
            user_id=config.user_id,
            app_id=app_id,
            permissions=entry["permissions"],
            clock=clock,
        )
        src = html.escape(with_token(entry["iframe_url"], token), quote=True)
        title = html.escape(entry["name"])
        return _page(
            200,
            f"<h1>{title}</h1>"
            f"<iframe id='app' title='{title}' src='{src}' referrerpolicy='no-referrer' "
            "sandbox='allow-scripts allow-forms' width='800' height='600'></iframe>",
        )

    return app
