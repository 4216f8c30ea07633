"""Marketplace helpers for the server and end-to-end tests: keys, app specs, a tenant, a market."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import ec

from agent.protocol import (
    ENTITLEMENTS_AUDIENCE,
    ENTITLEMENTS_TTL_SECONDS,
    ENTITLEMENTS_TYP,
    MARKETPLACE_GRACE_DAYS,
    MARKETPLACE_TRIAL_DAYS,
    MarketplacePlan,
    b64url,
)
from server_stub.services.marketplace import AppSpec
from tests.helpers.api import bearer
from tests.helpers.backend import Backend, BackendFactory

CHAT = "chat"


SHA = "ab" * 32


TRIAL = timedelta(days=MARKETPLACE_TRIAL_DAYS)


GRACE = timedelta(days=MARKETPLACE_GRACE_DAYS)


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def public_jwk(key: ec.EllipticCurvePrivateKey) -> dict[str, str]:
    numbers = key.public_key().public_numbers()
    return {
        "kty": "EC",
        "crv": "P-256",
        "x": b64url(numbers.x.to_bytes(32, "big")),
        "y": b64url(numbers.y.to_bytes(32, "big")),
    }


def app_spec(app_id: str = CHAT, **overrides: Any) -> AppSpec:
    values: dict[str, Any] = {
        "id": app_id,
        "name": f"The {app_id} app",
        "developer": "Dev Co",
        "description": "Talk to each other",
        "prices": {
            MarketplacePlan.MONTHLY: 990,
            MarketplacePlan.YEARLY: 9900,
            MarketplacePlan.PERPETUAL: 29900,
        },
        "currency": "USD",
        "artifact_url": f"https://dev.example/{app_id}.zip",
        "artifact_sha256": SHA,
        "artifact_size": 4096,
        "iframe_url": f"https://dev.example/{app_id}/",
        "callback_url": f"https://dev.example/{app_id}/callback",
        "permissions": ("chat:read", "chat:write"),
    }
    values.update(overrides)
    return AppSpec(**values)


@dataclass
class Tenant:
    """A registered backend: its id, its signing key and its Backend Admin Token."""

    id: str
    key: ec.EllipticCurvePrivateKey
    admin_token: str

    @property
    def admin(self) -> dict[str, str]:
        return bearer(self.admin_token)


def new_tenant(backend: Backend, name: str = "Acme") -> Tenant:
    key = new_key()
    created = backend.services.marketplace.create_backend(name, public_jwk(key))
    return Tenant(created.backend.id, key, created.admin_token.token)


@dataclass
class Market:
    backend: Backend
    tenant: Tenant

    @property
    def client(self) -> httpx.Client:
        return self.backend.client

    def license(
        self, plan: str, app_id: str = CHAT, tenant: Tenant | None = None
    ) -> httpx.Response:
        t = tenant or self.tenant
        return self.client.post(
            "/marketplace/licenses", json={"app_id": app_id, "plan": plan}, headers=t.admin
        )

    def install(
        self, app_id: str = CHAT, config: dict[str, Any] | None = None, tenant: Tenant | None = None
    ) -> httpx.Response:
        body: dict[str, Any] = {"app_id": app_id}
        if config is not None:
            body["config"] = config
        t = tenant or self.tenant
        return self.client.post("/marketplace/installations", json=body, headers=t.admin)

    def uninstall(self, app_id: str = CHAT) -> httpx.Response:
        return self.client.delete(f"/marketplace/installations/{app_id}", headers=self.tenant.admin)

    def user_token(self, tenant: Tenant | None = None) -> str:
        r = self.client.post("/marketplace/user-tokens", headers=(tenant or self.tenant).admin)
        assert r.status_code == 200, r.text
        token: str = r.json()["token"]
        return token

    def installed(self, tenant: Tenant | None = None) -> list[str]:
        """Ids of the apps ``installed`` lists, asked with a fresh Backend User Token."""
        r = self.client.get("/marketplace/installed", headers=bearer(self.user_token(tenant)))
        assert r.status_code == 200, r.text
        return [app["id"] for app in r.json()["apps"]]

    def catalog_entry(self, app_id: str = CHAT) -> dict[str, Any]:
        r = self.client.get("/marketplace/catalog", headers=self.tenant.admin)
        assert r.status_code == 200, r.text
        entry: dict[str, Any] = next(a for a in r.json()["apps"] if a["id"] == app_id)
        return entry

    def entitled(self, app_id: str = CHAT) -> list[str]:
        claims = verify_snapshot(self.backend, app_id)
        backends: list[str] = claims["backends"]
        return backends

    def actions(self, app_id: str | None = CHAT) -> list[tuple[str, str]]:
        trail = self.backend.services.marketplace.audit_trail(
            backend_id=self.tenant.id, app_id=app_id
        )
        return [(row.actor, row.action) for row in trail]


def verify_snapshot(backend: Backend, app_id: str = CHAT) -> dict[str, Any]:
    """Fetch an app's entitlement snapshot and verify it as an app would: ES256, the license
    key from the marketplace's JWKS, audience, issuer and times."""
    r = backend.client.get(f"/marketplace/apps/{app_id}/entitlements")
    assert r.status_code == 200, r.text
    snapshot = r.json()["snapshot"]
    header = jwt.get_unverified_header(snapshot)
    jwks = backend.client.get("/.well-known/jwks.json").json()["keys"]
    license_jwk = next(k for k in jwks if k["kid"] == header["kid"])
    assert license_jwk["alg"] == "ES256"
    assert header["kid"] == backend.services.ctx.keys.signing_key("license").kid
    claims: dict[str, Any] = jwt.decode(
        snapshot,
        jwt.PyJWK(license_jwk).key,
        algorithms=["ES256"],
        audience=ENTITLEMENTS_AUDIENCE,
        issuer=backend.settings.issuer,
        options={"verify_exp": False, "verify_iat": False, "verify_nbf": False},
    )
    now = int(backend.clock.now().timestamp())
    assert claims["typ"] == ENTITLEMENTS_TYP
    assert claims["app_id"] == app_id
    assert claims["iat"] == now and claims["exp"] == now + ENTITLEMENTS_TTL_SECONDS
    assert claims["backends"] == sorted(claims["backends"])
    return claims


def open_market(make_backend: BackendFactory) -> Market:
    """A backend with the app ``chat`` listed and one tenant registered."""
    backend = make_backend()
    backend.services.marketplace.create_app(app_spec())
    return Market(backend, new_tenant(backend))


def at(value: str) -> datetime:
    return datetime.fromisoformat(value)
