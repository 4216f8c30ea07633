"""One line per request the desktop makes to the license server, for the session log: method,
route and status, so a user (or support) can follow what happened. Never the query string, a
header or a body: tokens and passwords travel there."""

from __future__ import annotations

import logging

import httpx

from app.catalog import N_, story

log = logging.getLogger("tgflow.access")


async def _log_response(response: httpx.Response) -> None:
    request = response.request
    story(
        log,
        N_("log.access"),
        method=request.method,
        path=request.url.path,
        status=response.status_code,
    )


def log_requests(client: httpx.AsyncClient) -> None:
    """Add the access line to every response ``client`` receives."""
    hooks = client.event_hooks
    hooks["response"] = [*hooks.get("response", []), _log_response]
    client.event_hooks = hooks
