"""``tgflow --demo``: a local reference backend in this process, a demo user and plan.

The backend runs on SQLite in the demo data dir, on a free loopback port; the desktop then talks
to it over real HTTP exactly as it would to a remote one, and sends through the simulated
Telegram transport.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from server_stub.app import create_app
from server_stub.clock import Clock as ServerClock
from server_stub.config import Settings as ServerSettings
from server_stub.embedded import EmbeddedServer
from server_stub.wiring import Services, build_services

if TYPE_CHECKING:
    from .core import Core

log = logging.getLogger("tgflow.demo")

DEMO_EMAIL = "demo@tgflow.example"
DEMO_PLAN = "demo"
#: Recipients of the demo: opted-in test users of the simulated network.
DEMO_RECIPIENTS = tuple(f"@demo_user{i:03d}" for i in range(1, 51))


@dataclass
class DemoBackend:
    """A running embedded backend with a demo user."""

    url: str
    email: str
    password: str
    #: Pins of the backend's auth and license keys (settings.ini ``jwt_public_key_fingerprint``).
    pins: tuple[str, ...]
    services: Services
    server: EmbeddedServer = field(repr=False)

    def stop(self) -> None:
        self.server.stop()
        self.services.ctx.engine.dispose()


def start_demo_backend(
    data_dir: Path,
    *,
    monthly_quota: int = 1000,
    max_devices: int = 2,
    clock: ServerClock | None = None,
    email: str = DEMO_EMAIL,
    password: str | None = None,
    **settings: object,
) -> DemoBackend:
    """Start the reference backend on SQLite under ``data_dir`` and seed the demo user.

    The demo user's password is new on every start (the previous one is replaced).
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    server_settings = ServerSettings(
        data_dir=data_dir,
        log_json=False,
        log_level="WARNING",
        **settings,  # type: ignore[arg-type]
    )
    services = build_services(server_settings, clock)
    services.plans.upsert(
        DEMO_PLAN, monthly_quota=monthly_quota, max_devices=max_devices, features=["broadcast"]
    )
    password = password or secrets.token_urlsafe(12)
    services.auth.create_user(email, password, DEMO_PLAN)
    pins = tuple(key.pin for key in services.ctx.keys.published())
    server = EmbeddedServer(create_app(server_settings, clock=clock, services=services)).start()
    log.info("demo backend at %s", server.url)
    return DemoBackend(
        url=server.url,
        email=email,
        password=password,
        pins=pins,
        services=services,
        server=server,
    )


#: The simulated Telegram account the demo starts with.
DEMO_PHONE = "+15550000001"
#: The simulated network's login code (see ``app.transports.simulated``).
DEMO_CODE = "12345"


async def seed_demo_desktop(core: Core, data_dir: Path) -> Path:
    """Give the demo a simulated account and a recipients file; return the file's path."""
    if not core.accounts():
        await core.add_account_start(DEMO_PHONE)
        await core.add_account_code(DEMO_CODE)
    recipients = data_dir / "demo-recipients.csv"
    if not recipients.exists():
        recipients.write_text(
            "recipient\n" + "".join(f"{r}\n" for r in DEMO_RECIPIENTS), encoding="utf-8"
        )
    return recipients
