"""A stand-in marketplace for the app-side tests: a stdlib HTTP server that records every hit.

The marketplace's own endpoints are written elsewhere; the app side only needs two public ones
(a backend's JWKS and an app's entitlement snapshot), which this server answers from a route
table the tests change at will. The hit list proves what the verifier fetched, and when.
tests/agent/test_marketplace_server.py checks the stand-in itself, so that "no hit" elsewhere
means something.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec

from agent.clock import FakeClock
from agent.marketplace import (
    AppTokenVerifier,
    BackendKeyCache,
    key_id,
    mint_app_token,
    public_jwk,
)
from agent.marketplace.contract import ENTITLEMENTS_AUDIENCE

APP = "chat-app"


BACKEND_A = "backend-a"


BACKEND_B = "backend-b"


MARKETPLACE_ISSUER = "tgflow"


def jwks_path(backend_id: str) -> str:
    return f"/marketplace/backends/{backend_id}/jwks.json"


def entitlements_path(app_id: str = APP) -> str:
    return f"/marketplace/apps/{app_id}/entitlements"


class _Handler(BaseHTTPRequestHandler):
    market: FakeMarketplace

    def do_GET(self) -> None:
        market = self.market
        with market.lock:
            market.hits.append(self.path)
            status, body = market.routes.get(self.path, (404, b'{"code": "not_found"}'))
            gate = market.gates.get(self.path)
        market.arrived.set()
        if gate is not None:
            gate.wait(10)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return None


class FakeMarketplace:
    """The marketplace's public endpoints on an ephemeral loopback port, with a hit list."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.hits: list[str] = []
        self.routes: dict[str, tuple[int, bytes]] = {}
        #: Paths whose answer waits until the event is set (to make requests overlap).
        self.gates: dict[str, threading.Event] = {}
        self.arrived = threading.Event()
        handler = type("Handler", (_Handler,), {"market": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self.stopped = False

    def serve(self, path: str, body: Any, status: int = 200) -> None:
        """Answer ``path`` with ``body`` (bytes as they are, anything else as JSON)."""
        raw = body if isinstance(body, bytes) else json.dumps(body).encode("utf-8")
        with self.lock:
            self.routes[path] = (status, raw)

    def serve_jwks(self, backend_id: str, *keys: ec.EllipticCurvePrivateKey) -> None:
        self.serve(jwks_path(backend_id), {"keys": [public_jwk(k) for k in keys]})

    def serve_snapshot(self, jws: str, app_id: str = APP) -> None:
        self.serve(entitlements_path(app_id), {"snapshot": jws})

    def count(self, path: str) -> int:
        with self.lock:
            return self.hits.count(path)

    def total(self) -> int:
        with self.lock:
            return len(self.hits)

    def __enter__(self) -> FakeMarketplace:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Shut the server down; its port then refuses connections."""
        if not self.stopped:
            self.stopped = True
            for gate in self.gates.values():
                gate.set()
            self._httpd.shutdown()
            self._httpd.server_close()
            self._thread.join(10)


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def sign_snapshot(
    key: ec.EllipticCurvePrivateKey,
    clock: FakeClock,
    entitled: list[str],
    *,
    ttl: int = 600,
    headers: dict[str, Any] | None = None,
    algorithm: str = "ES256",
    **overrides: Any,
) -> str:
    """An entitlement snapshot as the marketplace signs it; ``overrides`` of None drop a claim."""
    now = int(clock.now().timestamp())
    claims: dict[str, Any] = {
        "iss": MARKETPLACE_ISSUER,
        "aud": ENTITLEMENTS_AUDIENCE,
        "typ": "entitlements",
        "app_id": APP,
        "backends": sorted(entitled),
        "iat": now,
        "exp": now + ttl,
    }
    for name, value in overrides.items():
        if value is None:
            claims.pop(name, None)
        else:
            claims[name] = value
    return jwt.encode(
        claims, key, algorithm=algorithm, headers={"kid": key_id(key), **(headers or {})}
    )


@dataclass
class World:
    """Two backends with their keys, a marketplace that entitles both, and an app's verifier."""

    market: FakeMarketplace
    clock: FakeClock
    key_a: ec.EllipticCurvePrivateKey
    key_b: ec.EllipticCurvePrivateKey
    license: ec.EllipticCurvePrivateKey
    keys: BackendKeyCache
    verifier: AppTokenVerifier
    cache_dir: Path

    def token(
        self,
        key: ec.EllipticCurvePrivateKey | None = None,
        *,
        backend_id: str = BACKEND_A,
        user_id: str = "user-1",
        permissions: tuple[str, ...] = ("chat:read", "chat:write"),
        **kwargs: Any,
    ) -> str:
        return mint_app_token(
            key or self.key_a,
            backend_id=backend_id,
            user_id=user_id,
            app_id=kwargs.pop("app_id", APP),
            permissions=permissions,
            clock=kwargs.pop("clock", self.clock),
            **kwargs,
        )

    def snapshot(self, entitled: list[str], **kwargs: Any) -> str:
        return sign_snapshot(self.license, self.clock, entitled, **kwargs)

    def __enter__(self) -> World:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.keys.close()


def make_world(market: FakeMarketplace, cache_dir: Path, **verifier_kwargs: Any) -> World:
    clock = FakeClock()
    key_a, key_b, license_key = new_key(), new_key(), new_key()
    market.serve_jwks(BACKEND_A, key_a)
    market.serve_jwks(BACKEND_B, key_b)
    market.serve_snapshot(sign_snapshot(license_key, clock, [BACKEND_A, BACKEND_B]))
    keys = BackendKeyCache(market.url, clock=clock, cache_dir=cache_dir)
    verifier = AppTokenVerifier(
        APP, keys, marketplace_key=license_key.public_key(), clock=clock, **verifier_kwargs
    )
    return World(market, clock, key_a, key_b, license_key, keys, verifier, cache_dir)
