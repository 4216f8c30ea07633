"""The agent's billing client against a shop (tests/helpers/billing_shop.py): a license client
for a new device, and a transport that records each request's Idempotency-Key and can turn the
server's answer into a 5xx after the server handled the request (a proxy's 502)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import keyring.backends.fail

from agent.license_client import AsyncLicenseClient
from agent.secrets import RefreshTokenStore
from tests.helpers.api import fingerprint
from tests.helpers.billing_shop import Shop


@dataclass
class KeyRecordingTransport(httpx.AsyncBaseTransport):
    """Passes every request to the real transport; records ``(method path, Idempotency-Key)``.

    ``lose_once`` names paths whose next answer is replaced by a 502 problem after the server
    answered it: the server did the work, the client saw a server error and retries.
    """

    sent: list[tuple[str, str | None]] = field(default_factory=list)
    lose_once: set[str] = field(default_factory=set)
    inner: httpx.AsyncBaseTransport = field(default_factory=httpx.AsyncHTTPTransport)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        self.sent.append((f"{request.method} {path}", request.headers.get("Idempotency-Key")))
        response = await self.inner.handle_async_request(request)
        if path not in self.lose_once:
            return response
        self.lose_once.discard(path)
        await response.aread()
        await response.aclose()
        problem = {"title": "Bad gateway", "status": 502, "detail": "injected", "code": "x"}
        headers = {"Content-Type": "application/problem+json"}
        return httpx.Response(502, headers=headers, content=json.dumps(problem).encode())

    def keys(self, what: str) -> list[str | None]:
        """The Idempotency-Key of each request sent as ``what`` ("POST /path"), in order."""
        return [key for sent, key in self.sent if sent == what]

    async def aclose(self) -> None:
        await self.inner.aclose()


def agent_for(shop: Shop, data_dir: Path) -> tuple[AsyncLicenseClient, KeyRecordingTransport]:
    """A license client of the shop's server for a new device, its retries not waiting."""
    keys = shop.services.ctx.keys
    pins = f"{keys.signing_key('auth').pin},{keys.signing_key('license').pin}"
    transport = KeyRecordingTransport()

    async def no_wait(_seconds: float) -> None:
        return None

    client = AsyncLicenseClient(
        str(shop.client.base_url),
        fingerprint=fingerprint(),
        pins=pins,
        data_dir=data_dir,
        secrets=RefreshTokenStore(data_dir, backend=keyring.backends.fail.Keyring()),
        sleep=no_wait,
        rand=lambda: 0.0,
        transport=transport,
    )
    return client, transport
