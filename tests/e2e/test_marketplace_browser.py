"""The marketplace in a real browser: a tenant host page embeds the example app in an iframe.

The reference backend (the marketplace), the example app (examples/marketplace_app/app.py) and
the tenant host page (examples/marketplace_app/host.py) each run on an ephemeral port, all on the
backend's fake clock; Debian's Chromium, driven by Playwright, opens the host page. A revoked
license shows in the app once its entitlement re-validation is due (5 minutes).

Skipped when Chromium or Playwright is missing, unless ``TGFLOW_REQUIRE_BROWSER`` is set (CI).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from examples.marketplace_app.app import AppConfig, build_verifier, create_app
from examples.marketplace_app.host import HostConfig, create_host_app
from tests.helpers.backend import BackendFactory
from tests.helpers.live_server import LiveServer
from tests.helpers.marketplace import CHAT, Market, app_spec, new_tenant

if TYPE_CHECKING:
    from playwright.sync_api import Browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _required(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0", "false")


def _browser_or_skip(reason: str) -> None:
    if _required("TGFLOW_REQUIRE_BROWSER"):
        pytest.fail(reason + " (TGFLOW_REQUIRE_BROWSER is set)")
    pytest.skip(reason)


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """SQLite only: the browser is what this test is about, not the database."""
    return f"sqlite:///{tmp_path / 'tgflow.db'}"


@pytest.fixture
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        _browser_or_skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        _browser_or_skip(f"the playwright package is missing: {exc}")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def test_the_app_in_the_host_iframe_grants_then_denies_after_revocation(
    make_backend: BackendFactory, browser: Browser, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    backend = make_backend()
    clock = backend.clock
    pin = backend.services.ctx.keys.signing_key("license").pin
    config = AppConfig(backend.url, CHAT, pin, tmp_path / "app-cache")
    with LiveServer(create_app(build_verifier(config, clock=clock))) as app_server:
        backend.services.marketplace.create_app(app_spec(iframe_url=f"{app_server.url}/"))
        tenant = new_tenant(backend)
        market = Market(backend, tenant)
        assert market.license("trial").status_code == 201
        assert market.install().status_code == 201
        host_config = HostConfig(backend.url, tenant.id, tenant.admin_token, tenant.key, "alice")
        with LiveServer(create_host_app(host_config, clock=clock)) as host:
            page = browser.new_page()
            page.goto(f"{host.url}/apps/{CHAT}")
            status = page.frame_locator("iframe#app").locator("#status")
            expect(status).to_have_text(f"Access granted for user alice of backend {tenant.id}")

            backend.services.marketplace.revoke_license(tenant.id, CHAT)
            clock.advance(5 * 60 + 1)  # past the app's entitlement re-validation interval
            # The open app is reloaded with the token it has (still valid): the app itself
            # refuses, whatever the host does.
            app_frame = next(f for f in page.frames if f.url.startswith(app_server.url))
            app_frame.goto(app_frame.url)
            expect(status).to_have_text(
                f"Access denied: backend '{tenant.id}' is not entitled to app '{CHAT}'"
            )
            # And the host no longer embeds it.
            page.reload()
            expect(page.locator("#status")).to_have_text(f"{CHAT} is not installed")
