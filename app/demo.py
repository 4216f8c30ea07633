"""``tgflow --demo``: a local reference backend in this process, a demo user and plan.

The backend runs on SQLite in the demo data dir, on a free loopback port; the desktop then talks
to it over real HTTP exactly as it would to a remote one, and sends through the simulated
Telegram transport.

It is also the demo's marketplace: a tenant backend (its P-256 key kept in the demo data dir)
and three apps — free, trial and paid — whose artifacts a small stdlib HTTP server on another
free loopback port serves (the reference backend has no static files).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import secrets
import threading
import zipfile
from contextlib import ExitStack
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from agent.marketplace import public_jwk
from agent.private_files import write_private_file
from agent.protocol import MarketplacePlan
from server_stub.app import create_app
from server_stub.clock import Clock as ServerClock
from server_stub.config import Settings as ServerSettings
from server_stub.demo import DEMO_EMAIL, seed_demo_user
from server_stub.embedded import EmbeddedServer
from server_stub.errors import DomainError
from server_stub.services.marketplace import AppSpec
from server_stub.wiring import Services, build_services

from .catalog import N_
from .core_config import Pacing

if TYPE_CHECKING:
    from server_stub.fake_providers.demo import DemoProviders

    from .clock import AsyncClock
    from .core import Core
    from .transports.simulated import SimulatedNetwork
    from .ui.main_window import MainWindow

log = logging.getLogger("tgflow.demo")

#: Recipients of the demo: opted-in test users of the simulated network.
DEMO_RECIPIENTS = tuple(f"@demo_user{i:03d}" for i in range(1, 51))


#: The demo marketplace's apps: id, name, developer, description, prices, currency.
DEMO_APPS: tuple[tuple[str, str, str, str, dict[MarketplacePlan, int], str], ...] = (
    (
        "notes",
        "Team notes",
        "TGFlow demo",
        "Shared notes for the team: free on every plan.",
        {MarketplacePlan.MONTHLY: 0, MarketplacePlan.YEARLY: 0, MarketplacePlan.PERPETUAL: 0},
        "USD",
    ),
    (
        "polls",
        "Polls",
        "Example Apps Ltd",
        "Ask your audience and count the answers. Try it for 14 days.",
        {MarketplacePlan.MONTHLY: 490, MarketplacePlan.YEARLY: 4900},
        "USD",
    ),
    (
        "crm",
        "Contacts CRM",
        "Example Apps Ltd",
        "Who was sent what and who answered, per contact.",
        {
            MarketplacePlan.MONTHLY: 1990,
            MarketplacePlan.YEARLY: 19900,
            MarketplacePlan.PERPETUAL: 49900,
        },
        "EUR",
    ),
)


def demo_artifact(app_id: str) -> bytes:
    """A small, deterministic zip standing for an app's files."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        info = zipfile.ZipInfo("index.html", date_time=(2026, 1, 1, 0, 0, 0))
        archive.writestr(info, f"<!doctype html><title>{app_id}</title><p>TGFlow demo app {app_id}")
    return buffer.getvalue()


class ArtifactServer:
    """Serves bytes by path on a free loopback port, in a thread of its own (stdlib only)."""

    def __init__(self) -> None:
        files: dict[str, tuple[bytes, str]] = {}

        class Handler(BaseHTTPRequestHandler):
            bodies: ClassVar[dict[str, tuple[bytes, str]]] = files

            def do_GET(self) -> None:
                # A browser's return page may carry a query (the checkout's id): not part of it.
                found = self.bodies.get(self.path.split("?", 1)[0])
                if found is None:
                    self.send_error(404)
                    return
                body, content_type = found
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:  # the apps' install callbacks: accepted, ignored
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.files = files
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        host, port = self._server.server_address[:2]
        self.url = f"http://{host!s}:{port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="tgflow-demo-artifacts", daemon=True
        )
        self._thread.start()

    def serve(self, path: str, body: bytes, content_type: str = "application/zip") -> str:
        """Serve ``body`` at ``path``; returns its URL."""
        self.files[path] = (body, content_type)
        return self.url + path

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


@dataclass
class DemoMarketplace:
    """The demo's tenant backend in the marketplace and the server of the apps' artifacts."""

    backend_id: str
    admin_token: str
    artifacts: ArtifactServer = field(repr=False)


@dataclass
class DemoBackend:
    """A running embedded backend with a demo user (and, usually, a demo marketplace and the
    fake payment providers)."""

    url: str
    email: str
    password: str
    #: Pins of the backend's auth and license keys (settings.ini ``jwt_public_key_fingerprint``).
    pins: tuple[str, ...]
    services: Services
    server: EmbeddedServer = field(repr=False)
    marketplace: DemoMarketplace | None = None
    #: The demo's license file and its license key (:func:`write_demo_license`).
    license_file: tuple[Path, str] | None = None
    #: The fake Stripe and CloudPayments the demo's checkouts go to (``None``: billing is off).
    payments: DemoProviders | None = None
    #: What runs beside the backend (the artifacts' server, the fake providers): closed last.
    resources: ExitStack = field(default_factory=ExitStack, repr=False)

    @property
    def store_checkout_url(self) -> str | None:
        """Where the desktop buys points: the fake RuStore (``None``: no fake providers)."""
        fakes = self.payments
        return None if fakes is None or fakes.rustore is None else fakes.rustore.base_url

    def stop(self) -> None:
        self.server.stop()
        self.resources.close()
        self.services.ctx.engine.dispose()


def _backend_key(path: Path) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if isinstance(key, ec.EllipticCurvePrivateKey):
            return key
    except (OSError, ValueError):
        pass
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    write_private_file(path, pem, prefix=".marketplace-key-")
    return key


def seed_demo_marketplace(
    services: Services, data_dir: Path, artifacts: ArtifactServer
) -> DemoMarketplace:
    """Register the demo's tenant backend (or re-issue its admin token) and list the apps,
    their files served by ``artifacts``."""
    market = services.marketplace
    state_path = data_dir / "demo-marketplace.json"
    key_path = data_dir / "demo-marketplace-key.pem"
    try:
        backend_id = str(json.loads(state_path.read_text(encoding="utf-8"))["backend_id"])
        token = market.reissue_admin_token(backend_id).token
    except (OSError, ValueError, KeyError, DomainError):
        key_path.unlink(missing_ok=True)  # a key registered to a backend we lost track of
        created = market.create_backend("TGFlow demo", public_jwk(_backend_key(key_path)))
        backend_id, token = created.backend.id, created.admin_token.token
        state_path.write_text(json.dumps({"backend_id": backend_id}) + "\n", encoding="utf-8")
    listed = {app.id for app in market.list_apps()}
    for app_id, name, developer, description, prices, currency in DEMO_APPS:
        body = demo_artifact(app_id)
        spec = AppSpec(
            id=app_id,
            name=name,
            developer=developer,
            description=description,
            currency=currency,
            prices=prices,
            artifact_url=artifacts.serve(f"/{app_id}/{app_id}-1.0.zip", body),
            artifact_sha256=hashlib.sha256(body).hexdigest(),
            artifact_size=len(body),
            iframe_url=f"{artifacts.url}/{app_id}/",
            callback_url=f"{artifacts.url}/{app_id}/callback",
            permissions=("chat:read",),
        )
        # The artifact server's port is new on every start: an app listed before is re-pointed.
        if app_id in listed:
            market.update_app(spec)
        else:
            market.create_app(spec)
    return DemoMarketplace(backend_id, token, artifacts)


def start_demo_backend(
    data_dir: Path,
    *,
    monthly_quota: int = 1000,
    max_devices: int = 2,
    clock: ServerClock | None = None,
    email: str = DEMO_EMAIL,
    password: str | None = None,
    marketplace: bool = True,
    payments: bool = True,
    **settings: object,
) -> DemoBackend:
    """Start the reference backend on SQLite under ``data_dir`` and seed the demo user.

    The demo user's password is new on every start (the previous one is replaced). With
    ``marketplace``, also the demo marketplace (:func:`seed_demo_marketplace`); its admin token
    is new on every start too. The demo user is granted points once, and the demo plan sells
    messages for them (:func:`app.demo_billing.seed_demo_points`). With ``payments``, the fake
    Stripe and CloudPayments are served first (their URLs and secrets go into the backend's
    settings), the demo's paid plans are offered (:mod:`app.demo_billing`), and the fakes'
    webhooks are aimed at the backend once it listens; the backend's own webhook worker applies
    them. ``settings`` override any of it.
    """
    from .demo_billing import (
        keep_paid_plan,
        seed_demo_plans,
        seed_demo_points,
        seed_demo_products,
        start_demo_providers,
    )

    data_dir.mkdir(parents=True, exist_ok=True)
    # Everything that runs beside the backend, closed (in reverse) by DemoBackend.stop(), or
    # here when the start fails half-way.
    resources = ExitStack()
    services: Services | None = None
    try:
        artifacts = ArtifactServer()
        resources.callback(artifacts.stop)
        fakes: DemoProviders | None = None
        payment_settings: dict[str, object] = {}
        if payments:
            fakes, payment_settings = start_demo_providers(resources, artifacts, clock)
        server_settings = ServerSettings(
            data_dir=data_dir,
            log_json=False,
            log_level="WARNING",
            **{**payment_settings, **settings},  # type: ignore[arg-type]
        )
        services = build_services(server_settings, clock)
        password = password or secrets.token_urlsafe(12)
        seed_demo_user(
            services, password, email=email, monthly_quota=monthly_quota, max_devices=max_devices
        )
        seed_demo_points(services, email)
        if fakes is not None:
            seed_demo_plans(services)
            seed_demo_products(services, fakes)
            keep_paid_plan(services, email)
        pins = tuple(key.pin for key in services.ctx.keys.published())
        market = seed_demo_marketplace(services, data_dir, artifacts) if marketplace else None
        server = EmbeddedServer(create_app(server_settings, clock=clock, services=services)).start()
    except BaseException:
        resources.close()
        if services is not None:
            services.ctx.engine.dispose()
        raise
    if fakes is not None:
        fakes.deliver_to(server.url)
    log.info("demo backend at %s", server.url)
    return DemoBackend(
        url=server.url,
        email=email,
        password=password,
        pins=pins,
        services=services,
        server=server,
        marketplace=market,
        payments=fakes,
        resources=resources,
    )


#: The demo license file's name, in the demo data dir (beside the recipients).
DEMO_LICENSE_FILE = "demo-license.lic"


def write_demo_license(backend: DemoBackend, data_dir: Path, domain: str) -> tuple[Path, str]:
    """Sign ``demo-license.lic`` with the demo server's license key, for this computer's
    ``domain``; returns its path and license key (new at every start, like the password).

    The file is encrypted (the key is needed, as with a real one) and carries the modules
    the desktop knows (marketplace, multi_account) and a monthly limit of 1,000 messages.
    """
    from datetime import timedelta

    from agent.protocol import LicenseLimits
    from server_stub.services.license_files import LicenseTerms, issue_license_file

    from . import __version__
    from .license_modules import MODULE_MARKETPLACE, MODULE_MULTI_ACCOUNT

    services = backend.services
    now = services.ctx.clock.now()
    key = "TGF-DEMO-" + secrets.token_hex(16).upper()
    major = int(__version__.split(".")[0])
    terms = LicenseTerms(
        license_key=key,
        file_version=1,
        customer_id="demo",
        customer_name="TGFlow Demo",
        product="tgflow",
        plan="advanced",
        modules=(MODULE_MARKETPLACE, MODULE_MULTI_ACCOUNT),
        limits=LicenseLimits(
            users=5, departments=2, integrations=None, api_rate=None, messages=1000
        ),
        valid_from=now - timedelta(days=1),
        valid_until=now + timedelta(days=365),
        grace=timedelta(days=14),
        domain=domain,
        min_version="0.1",
        max_version=f"{major + 1}.0",
    )
    text = issue_license_file(
        services.signer, terms, issuer=services.ctx.settings.issuer, now=now, encrypt=True
    )
    path = data_dir / DEMO_LICENSE_FILE
    path.write_text(text, encoding="utf-8")
    backend.license_file = (path, key)
    return path, key


#: The simulated Telegram account the demo starts with.
DEMO_PHONE = "+15550000001"
#: The simulated network's login code (see ``app.transports.simulated``).
DEMO_CODE = "12345"


#: The demo's pacing: 50 simulated messages in about 25 s (real accounts keep settings.ini's
#: conservative [broadcast] values; the demo ignores them, it talks to nobody).
DEMO_PACING = Pacing(min_delay_sec=0.2, max_delay_sec=0.6, batch_size=50)
#: The translation key of the message already written in the demo's Broadcast tab (in the
#: window's language, like everything the program writes for the user).
DEMO_MESSAGE = N_("demo.message")


def demo_network(clock: AsyncClock) -> SimulatedNetwork:
    """The demo's simulated Telegram: a little latency and an occasional short FloodWait."""
    from .transports.simulated import SimulatedNetwork

    return SimulatedNetwork(
        seed=2026,
        clock=clock,
        latency=(0.02, 0.08),
        flood_wait_rate=0.01,
        flood_wait_seconds=(3, 8),
    )


def demo_recipients_file(data_dir: Path) -> Path:
    return data_dir / "demo-recipients.csv"


def prepare_demo_window(window: MainWindow, data_dir: Path) -> None:
    """The demo's Broadcast tab: its recipients imported and its message written, so that a
    newcomer's clicks are Sign in, the Broadcast tab, the opt-in tick and Start."""
    window.prefill_broadcast(demo_recipients_file(data_dir), window.translator.tr(DEMO_MESSAGE))


async def seed_demo_desktop(core: Core, data_dir: Path) -> Path:
    """Give the demo a simulated account and a recipients file; return the file's path."""
    if not core.accounts():
        await core.add_account_start(DEMO_PHONE)
        await core.add_account_code(DEMO_CODE)
    recipients = demo_recipients_file(data_dir)
    if not recipients.exists():
        recipients.write_text(
            "recipient\n" + "".join(f"{r}\n" for r in DEMO_RECIPIENTS), encoding="utf-8"
        )
    return recipients
