"""Release manifests for the update-notice tests: made, signed as the server signs them, and
served by a fake server (an httpx mock transport) that counts what it is asked."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from typing import Any

import httpx

from agent.protocol import (
    RELEASE_MANIFEST_FORMAT,
    RELEASE_MANIFEST_PATH,
    RELEASE_MANIFEST_TYP,
    ReleaseDownload,
    ReleaseManifest,
)
from server_stub.signing import Signer, sign_claims

ISSUER = "tgflow"
SHA256 = "ab" * 32


def manifest(version: str = "0.2.0", **changes: Any) -> ReleaseManifest:
    """A manifest of ``version`` with a Linux and a Windows archive."""
    downloads = tuple(
        ReleaseDownload(
            platform=platform,
            name=f"tgflow-{version}-{platform}.{ext}",
            url=f"https://downloads.example.com/tgflow/{version}/tgflow-{version}-{platform}.{ext}",
            size=123_456_789,
            sha256=SHA256,
        )
        for platform, ext in (("linux-x86_64", "tar.gz"), ("windows-x86_64", "zip"))
    )
    fields: dict[str, Any] = {
        "format": RELEASE_MANIFEST_FORMAT,
        "version": version,
        "released": dt.date(2026, 11, 30),
        "notes": "Fixed: a faster start.",
        "downloads": downloads,
        **changes,
    }
    return ReleaseManifest(**fields)


def signed(
    signer: Signer, version: str = "0.2.0", *, iat: int = 1_790_000_000, **changes: Any
) -> str:
    """The manifest of ``version`` signed with ``signer`` as the server signs it."""
    claims = {**manifest(version, **changes).model_dump(mode="json"), "iss": ISSUER, "iat": iat}
    return sign_claims(signer, RELEASE_MANIFEST_TYP, claims)


class FakeReleaseServer:
    """Serves ``manifest`` (a JWS, or ``None`` for 404) and ``jwks``; counts manifest requests."""

    def __init__(self, jwks: dict[str, Any], manifest: str | None = None) -> None:
        self.jwks = jwks
        self.manifest = manifest
        self.asked = 0

    def handler(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/.well-known/jwks.json":
            return httpx.Response(200, json=self.jwks)
        assert request.url.path == RELEASE_MANIFEST_PATH, request.url
        self.asked += 1
        if self.manifest is None:
            return httpx.Response(404, json={"code": "not_found"})
        return httpx.Response(200, text=self.manifest)

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.MockTransport(self.handler))


def tamper(jws: str, change: Callable[[dict[str, Any]], None]) -> str:
    """``jws`` with its payload changed and the signature kept (a forgery)."""
    import base64

    header, payload, signature = jws.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    change(claims)
    body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{body}.{signature}"
