"""The marketplace client against a real reference backend, and the artifact download against a
local HTTP server: a good artifact is installed; a wrong digest or size leaves nothing behind."""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from agent.config_checks import InsecureApiUrl
from agent.marketplace import public_jwk
from agent.marketplace.client import (
    AdminTokenRejected,
    AppNotFound,
    ArtifactDigestMismatch,
    ArtifactDownloadFailed,
    ArtifactSizeMismatch,
    LicenseConflict,
    MarketplaceClient,
    MarketplaceLicenseInactive,
    MarketplaceRequestError,
    MarketplaceUnreachable,
    download_artifact,
)
from agent.protocol import MarketplacePlan
from server_stub.services.marketplace import AppSpec
from tests.helpers.agent_backend import AgentBackend, closed_port_url

_T = TypeVar("_T")

ARTIFACT = bytes(range(256)) * 1000  # 256,000 bytes: several chunks
SHA = hashlib.sha256(ARTIFACT).hexdigest()


def run(coro: Coroutine[Any, Any, _T]) -> _T:
    return asyncio.run(coro)


# --- the artifact server ------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.0: without Content-Length the body simply ends when the connection closes.
    bodies: ClassVar[dict[str, tuple[bytes, bool]]] = {}

    def do_GET(self) -> None:
        found = self.bodies.get(self.path)
        if found is None:
            self.send_error(404)
            return
        body, with_length = found
        self.send_response(200)
        self.send_header("Content-Type", "application/zip")
        if with_length:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@dataclass
class ArtifactServer:
    url: str
    bodies: dict[str, tuple[bytes, bool]]

    def serve(self, path: str, body: bytes, *, with_length: bool = True) -> str:
        self.bodies[path] = (body, with_length)
        return self.url + path


@pytest.fixture
def artifacts() -> Iterator[ArtifactServer]:
    handler: type[_Handler] = type("Handler", (_Handler,), {"bodies": {}})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        host, port = server.server_address[:2]
        yield ArtifactServer(f"http://{host!s}:{port}", handler.bodies)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


# --- the marketplace ----------------------------------------------------------------------------


@dataclass
class Tenant:
    backend: AgentBackend
    admin_token: str

    def client(self, token: str | None = None) -> MarketplaceClient:
        return MarketplaceClient(self.backend.url, token or self.admin_token)


def new_tenant(backend: AgentBackend) -> Tenant:
    key = ec.generate_private_key(ec.SECP256R1())
    created = backend.services.marketplace.create_backend("Acme", public_jwk(key))
    return Tenant(backend, created.admin_token.token)


def list_app(backend: AgentBackend, app_id: str = "chat", **overrides: Any) -> None:
    values: dict[str, Any] = {
        "id": app_id,
        "name": "Chat",
        "developer": "Dev Co",
        "description": "Talk to each other",
        "prices": {MarketplacePlan.MONTHLY: 990, MarketplacePlan.YEARLY: 9900},
        "currency": "USD",
        "artifact_url": f"https://dev.example/{app_id}.zip",
        "artifact_sha256": SHA,
        "artifact_size": len(ARTIFACT),
        "iframe_url": f"https://dev.example/{app_id}/",
        "callback_url": f"https://dev.example/{app_id}/callback",
        "permissions": ("chat:read",),
    }
    backend.services.marketplace.create_app(AppSpec(**(values | overrides)))


@pytest.fixture
def tenant(backend: AgentBackend) -> Tenant:
    list_app(backend)
    return new_tenant(backend)


def test_catalog_trial_install_installed_uninstall(tenant: Tenant) -> None:
    async def scenario() -> None:
        async with tenant.client() as client:
            catalog = await client.catalog()
            (item,) = catalog.apps
            assert (item.id, item.license, item.installed) == ("chat", None, False)
            assert (item.prices.currency, item.prices.monthly, item.prices.perpetual) == (
                "USD",
                990,
                None,
            )
            assert (item.artifact.sha256, item.artifact.size) == (SHA, len(ARTIFACT))

            lic = await client.request_license("chat", "trial")
            assert (lic.plan, lic.status) == ("trial", "trial")
            installation = await client.install("chat", {"greeting": "hi"})
            assert installation.config == {"greeting": "hi"}
            assert (await client.catalog()).apps[0].installed

            token = (await client.user_token()).token
            installed = await client.installed(token)
            assert [(a.id, a.license_status) for a in installed.apps] == [("chat", "trial")]

            await client.uninstall("chat")
            await client.uninstall("chat")  # idempotent
            assert (await client.installed()).apps == []

    run(scenario())


def test_refusals_are_typed_with_the_servers_reason(tenant: Tenant) -> None:
    async def scenario() -> None:
        async with tenant.client() as client:
            with pytest.raises(MarketplaceLicenseInactive) as inactive:
                await client.install("chat")
            assert inactive.value.problem_code == "license_inactive"
            assert inactive.value.status == 403
            with pytest.raises(AppNotFound, match="nope"):
                await client.request_license("nope", "trial")
            await client.request_license("chat", "monthly")
            tenant.backend.services.marketplace.activate_license(_backend_id(tenant), "chat")
            with pytest.raises(LicenseConflict):
                await client.request_license("chat", "trial")
            user_token = (await client.user_token()).token
        # A Backend User Token is not an admin token: 403 forbidden, a typed refusal.
        async with tenant.client(user_token) as wrong_type:
            with pytest.raises(AdminTokenRejected) as forbidden:
                await wrong_type.catalog()
            assert forbidden.value.problem_code == "forbidden"
        async with tenant.client("not-a-token") as garbage:
            with pytest.raises(AdminTokenRejected) as invalid:
                await garbage.catalog()
            assert invalid.value.status == 401

    run(scenario())


def _backend_id(tenant: Tenant) -> str:
    principal = tenant.backend.services.marketplace.authenticate_admin(tenant.admin_token)
    return principal.backend_id


def test_plain_http_only_to_loopback_and_an_unreachable_marketplace(tenant: Tenant) -> None:
    with pytest.raises(InsecureApiUrl):
        MarketplaceClient("http://market.example", tenant.admin_token)

    async def scenario() -> None:
        async with MarketplaceClient(closed_port_url(), tenant.admin_token) as client:
            with pytest.raises(MarketplaceUnreachable):
                await client.catalog()

    run(scenario())


def test_an_answer_that_is_not_the_model_is_a_request_error() -> None:
    # A 200 whose body is not a Catalog: the marketplace's own error, naming the call and model.
    junk = httpx.MockTransport(lambda request: httpx.Response(200, content=b"[1, 2]"))

    async def scenario() -> None:
        async with MarketplaceClient("http://127.0.0.1:9", "t", transport=junk) as client:
            with pytest.raises(MarketplaceRequestError) as refused:
                await client.catalog()
        assert str(refused.value) == "GET /marketplace/catalog: the answer is not a valid Catalog"
        assert refused.value.status == 200 and refused.value.problem_code is None

    run(scenario())


# --- artifacts ----------------------------------------------------------------------------------


def test_a_good_artifact_is_moved_into_place_with_increasing_progress(
    artifacts: ArtifactServer, tmp_path: Path
) -> None:
    url = artifacts.serve("/chat-1.0.zip", ARTIFACT)
    dest = tmp_path / "apps" / "chat"
    seen: list[tuple[int, int]] = []

    path = run(
        download_artifact(
            url, SHA, len(ARTIFACT), dest, lambda done, total: seen.append((done, total))
        )
    )

    assert path == dest / "chat-1.0.zip"
    assert path.read_bytes() == ARTIFACT
    assert [p.name for p in dest.iterdir()] == ["chat-1.0.zip"]
    assert len(seen) > 1
    assert all(total == len(ARTIFACT) for _, total in seen)
    dones = [done for done, _ in seen]
    assert dones == sorted(set(dones)) and dones[-1] == len(ARTIFACT)


@pytest.mark.parametrize("with_length", [True, False], ids=["content-length", "no-length"])
@pytest.mark.parametrize(
    ("body", "error"),
    [
        (ARTIFACT[:-1] + b"\x00", ArtifactDigestMismatch),
        (ARTIFACT + b"more", ArtifactSizeMismatch),
        (ARTIFACT[:-4], ArtifactSizeMismatch),
    ],
    ids=["wrong-sha256", "bigger", "smaller"],
)
def test_a_wrong_artifact_leaves_nothing_behind(
    artifacts: ArtifactServer,
    tmp_path: Path,
    body: bytes,
    error: type[Exception],
    with_length: bool,
) -> None:
    url = artifacts.serve("/chat.zip", body, with_length=with_length)
    dest = tmp_path / "apps" / "chat"
    seen: list[int] = []

    with pytest.raises(error):
        run(download_artifact(url, SHA, len(ARTIFACT), dest, lambda done, _t: seen.append(done)))

    assert not dest.exists()
    assert all(done <= len(ARTIFACT) for done in seen)  # never more taken in than announced


def test_a_failure_keeps_what_the_directory_held_before(
    artifacts: ArtifactServer, tmp_path: Path
) -> None:
    dest = tmp_path / "apps" / "chat"
    dest.mkdir(parents=True)
    (dest / "keep.txt").write_text("mine")
    url = artifacts.serve("/chat.zip", b"x" * 10)

    with pytest.raises(ArtifactSizeMismatch):
        run(download_artifact(url, SHA, len(ARTIFACT), dest))

    assert [p.name for p in dest.iterdir()] == ["keep.txt"]


def test_an_artifact_over_plain_http_to_another_host_or_a_404_is_refused(
    artifacts: ArtifactServer, tmp_path: Path
) -> None:
    dest = tmp_path / "apps" / "chat"
    with pytest.raises(ArtifactDownloadFailed, match="https"):
        run(download_artifact("http://dev.example/chat.zip", SHA, 1, dest))
    with pytest.raises(ArtifactDownloadFailed, match="404"):
        run(download_artifact(artifacts.url + "/missing.zip", SHA, 1, dest))
    assert not dest.exists()
