"""Marketplace tokens and keys: each endpoint takes exactly its token type; expired, forged and
replaced tokens are refused; the backends' JWKS and its rotation; the tokens' claims."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from agent.protocol import (
    BACKEND_ADMIN_TOKEN_TTL_SECONDS,
    BACKEND_USER_TOKEN_TTL_SECONDS,
    MARKETPLACE_ADMIN_AUDIENCE,
    MARKETPLACE_USER_AUDIENCE,
    b64url,
    jwk_thumbprint,
)
from tests.helpers.api import assert_problem, bearer, register
from tests.helpers.backend import Backend, BackendFactory
from tests.helpers.marketplace import (
    CHAT,
    Market,
    Tenant,
    new_key,
    new_tenant,
    open_market,
    public_jwk,
)

AUTH_LEEWAY = 30


@pytest.fixture
def market(make_backend: BackendFactory) -> Market:
    return open_market(make_backend)


Call = tuple[str, str, Callable[[], Any] | None]

ADMIN_CALLS: list[Call] = [
    ("GET", "/marketplace/catalog", None),
    ("POST", "/marketplace/licenses", lambda: {"app_id": CHAT, "plan": "trial"}),
    ("POST", "/marketplace/installations", lambda: {"app_id": CHAT}),
    ("DELETE", f"/marketplace/installations/{CHAT}", None),
    ("POST", "/marketplace/user-tokens", None),
    ("PUT", "/marketplace/backends/me/keys", lambda: {"jwk": public_jwk(new_key())}),
]
USER_CALLS: list[Call] = [("GET", "/marketplace/installed", None)]


def send(client: httpx.Client, call: Call, token: str | None) -> httpx.Response:
    method, path, body = call
    headers = bearer(token) if token is not None else {}
    return client.request(method, path, json=body() if body else None, headers=headers)


def refusals(client: httpx.Client, calls: list[Call], token: str | None) -> set[tuple[int, str]]:
    """The (status, code) answers of ``calls`` with ``token``; every one must be a refusal."""
    answers = set()
    for call in calls:
        r = send(client, call, token)
        assert r.status_code in (401, 403), (call, r.text)
        body = assert_problem(r, r.status_code, r.json()["code"])
        answers.add((r.status_code, body["code"]))
    return answers


def app_access_token(market: Market, **overrides: Any) -> str:
    """A User App Access Token as a tenant backend signs it (ES256, its own key)."""
    now = int(market.backend.clock.now().timestamp())
    claims = {
        "iss": market.tenant.id,
        "sub": "user-1",
        "aud": CHAT,
        "typ": "app-access",
        "permissions": ["chat:read"],
        "jti": "j-1",
        "iat": now,
        "exp": now + 1800,
        **overrides,
    }
    kid = jwk_thumbprint(public_jwk(market.tenant.key))
    return jwt.encode(claims, market.tenant.key, algorithm="ES256", headers={"kid": kid})


def claims_of(token: str) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return claims


def _segment(data: dict[str, Any]) -> str:
    return b64url(json.dumps(data, separators=(",", ":")).encode())


def hs256_with_public_key(backend: Backend, claims: dict[str, Any]) -> str:
    """The classic key confusion: HS256 keyed with the server's RSA public key (PEM).

    Built by hand, because PyJWT refuses to make one.
    """
    auth = backend.services.ctx.keys.signing_key("auth")
    secret = auth.public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    signing_input = (
        _segment({"alg": "HS256", "typ": "JWT", "kid": auth.kid}) + "." + _segment(claims)
    )
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + b64url(mac)


def unsigned(claims: dict[str, Any], kid: str) -> str:
    return _segment({"alg": "none", "typ": "JWT", "kid": kid}) + "." + _segment(claims) + "."


# --- one token type per endpoint ----------------------------------------------------------------


def test_each_endpoint_takes_only_its_token_type(market: Market) -> None:
    client = market.client
    admin, user = market.tenant.admin_token, market.user_token()
    session = register(client)
    access = session["token"]
    lease = client.get("/license", headers=bearer(access)).json()["lease"]
    forbidden = {(403, "forbidden")}
    invalid = {(401, "token_invalid")}

    # Tokens this server signed, of another type: 403 forbidden.
    assert refusals(client, ADMIN_CALLS, user) == forbidden
    assert refusals(client, USER_CALLS, admin) == forbidden
    assert refusals(client, ADMIN_CALLS + USER_CALLS, access) == forbidden
    assert refusals(client, ADMIN_CALLS + USER_CALLS, lease) == forbidden
    # A User App Access Token is the backend's own, never the marketplace's: 401.
    app_token = app_access_token(market)
    assert refusals(client, ADMIN_CALLS + USER_CALLS, app_token) == invalid
    # No token at all.
    assert refusals(client, ADMIN_CALLS + USER_CALLS, None) == invalid
    # The other way round: marketplace tokens are not access tokens.
    for token in (admin, user):
        assert_problem(client.get("/license", headers=bearer(token)), 401, "token_invalid")
    # Nothing was done by any refused call.
    assert [row.action for row in market.backend.services.marketplace.audit_trail()] == [
        "app.create",
        "backend.create",
    ]
    # And each token works where it belongs.
    assert send(client, ADMIN_CALLS[0], admin).status_code == 200
    assert send(client, USER_CALLS[0], user).status_code == 200


def test_the_forbidden_answer_names_the_expected_token(market: Market) -> None:
    r = market.client.get("/marketplace/catalog", headers=bearer(market.user_token()))
    body = assert_problem(r, 403, "forbidden")
    assert body["detail"] == "this endpoint takes a Backend Admin Token, not a Backend User Token"


def test_token_claims(market: Market) -> None:
    now = int(market.backend.clock.now().timestamp())
    auth_kid = market.backend.services.ctx.keys.signing_key("auth").kid
    r = market.client.post("/marketplace/user-tokens", headers=market.tenant.admin)
    body = r.json()
    assert body["token_type"] == "Bearer" and body["backend_id"] == market.tenant.id
    assert body["exp"] == now + BACKEND_USER_TOKEN_TTL_SECONDS
    for token, audience, typ, scope, ttl in (
        (
            market.tenant.admin_token,
            MARKETPLACE_ADMIN_AUDIENCE,
            "marketplace-admin",
            "marketplace:admin",
            BACKEND_ADMIN_TOKEN_TTL_SECONDS,
        ),
        (
            body["token"],
            MARKETPLACE_USER_AUDIENCE,
            "marketplace-user",
            "marketplace:read",
            BACKEND_USER_TOKEN_TTL_SECONDS,
        ),
    ):
        assert jwt.get_unverified_header(token) == {"alg": "RS256", "kid": auth_kid, "typ": "JWT"}
        claims = claims_of(token)
        assert claims["aud"] == audience and claims["typ"] == typ and claims["scope"] == scope
        assert claims["sub"] == market.tenant.id and claims["iss"] == "tgflow"
        assert claims["exp"] - claims["iat"] == ttl and len(claims["jti"]) == 32


# --- expired, forged and replaced tokens --------------------------------------------------------


def test_expired_tokens(market: Market) -> None:
    clock = market.backend.clock
    start = clock.now()
    user = market.user_token()
    clock.set(start + timedelta(seconds=BACKEND_USER_TOKEN_TTL_SECONDS + AUTH_LEEWAY - 1))
    assert send(market.client, USER_CALLS[0], user).status_code == 200  # within the leeway
    clock.set(start + timedelta(seconds=BACKEND_USER_TOKEN_TTL_SECONDS + AUTH_LEEWAY + 1))
    assert_problem(send(market.client, USER_CALLS[0], user), 401, "token_expired")

    admin = market.tenant.admin_token
    clock.set(start + timedelta(seconds=BACKEND_ADMIN_TOKEN_TTL_SECONDS - 1))
    assert send(market.client, ADMIN_CALLS[0], admin).status_code == 200
    clock.set(start + timedelta(seconds=BACKEND_ADMIN_TOKEN_TTL_SECONDS + AUTH_LEEWAY + 1))
    assert_problem(send(market.client, ADMIN_CALLS[0], admin), 401, "token_expired")
    # An expired token of another type is refused as expired, before its type is looked at.
    assert_problem(send(market.client, USER_CALLS[0], admin), 401, "token_expired")


def test_tokens_from_the_future_are_refused(market: Market) -> None:
    market.backend.clock.advance(3600)
    early = market.user_token()
    market.backend.clock.advance(-3600)
    assert_problem(send(market.client, USER_CALLS[0], early), 401, "token_invalid")


@pytest.mark.parametrize("kind", ["admin", "user"])
def test_forged_tokens_are_invalid(market: Market, kind: str) -> None:
    backend = market.backend
    real = market.tenant.admin_token if kind == "admin" else market.user_token()
    call = ADMIN_CALLS[0] if kind == "admin" else USER_CALLS[0]
    claims = claims_of(real)
    header = jwt.get_unverified_header(real)
    attacker = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    license_key = backend.services.ctx.keys.signing_key("license")
    head, _payload, signature = real.split(".")
    forgeries = {
        "another RSA key, same kid": jwt.encode(
            claims, attacker, algorithm="RS256", headers={"kid": header["kid"]}
        ),
        "embedded jwk header": jwt.encode(
            claims,
            attacker,
            algorithm="RS256",
            headers={
                "kid": header["kid"],
                "jwk": jwt.algorithms.RSAAlgorithm.to_jwk(attacker.public_key(), as_dict=True),
            },
        ),
        "alg none": unsigned(claims, header["kid"]),
        "HS256 keyed with the public key": hs256_with_public_key(backend, claims),
        "the license key (ES256)": jwt.encode(
            claims, license_key.private_key, algorithm="ES256", headers={"kid": license_key.kid}
        ),
        "the license key's kid on RS256": jwt.encode(
            claims, attacker, algorithm="RS256", headers={"kid": license_key.kid}
        ),
        "payload swapped under the signature": ".".join(
            (head, _segment({**claims, "sub": "someone-else"}), signature)
        ),
        "no kid": jwt.encode(claims, attacker, algorithm="RS256"),
        "garbage": "not.a.token",
        "empty segments": "..",
    }
    for name, forged in forgeries.items():
        r = send(market.client, call, forged)
        assert r.status_code == 401 and r.json()["code"] == "token_invalid", (name, r.text)
    assert send(market.client, call, real).status_code == 200


def test_a_reissued_admin_token_replaces_the_old_one(market: Market) -> None:
    services = market.backend.services.marketplace
    old = market.tenant.admin_token
    user_before = market.user_token()
    new = services.reissue_admin_token(market.tenant.id).token
    body = assert_problem(send(market.client, ADMIN_CALLS[0], old), 401, "token_invalid")
    assert "replaced" in body["detail"]
    assert send(market.client, ADMIN_CALLS[0], new).status_code == 200
    # Backend User Tokens already issued live out their hour (read-only, docs/marketplace.md).
    assert send(market.client, USER_CALLS[0], user_before).status_code == 200
    row = services.audit_trail(backend_id=market.tenant.id)[-1]
    assert row.action == "backend.admin_token" and row.actor == "operator"
    assert row.before == {"admin_token_jti": claims_of(old)["jti"]}
    assert row.after == {"admin_token_jti": claims_of(new)["jti"]}


def test_the_admin_token_outlives_a_rotation_of_the_auth_key(market: Market) -> None:
    keys = market.backend.services.ctx.keys
    old_kid = keys.signing_key("auth").kid
    keys.rotate("auth")
    market.backend.clock.advance(73 * 3600)  # the old key has left the public JWKS
    published = {k["kid"] for k in market.client.get("/.well-known/jwks.json").json()["keys"]}
    assert old_kid not in published
    assert send(market.client, ADMIN_CALLS[0], market.tenant.admin_token).status_code == 200
    user = market.user_token()
    assert jwt.get_unverified_header(user)["kid"] == keys.signing_key("auth").kid
    # An access token signed by that retired key is still refused.
    assert_problem(
        market.client.get("/license", headers=bearer(market.tenant.admin_token)),
        401,
        "token_invalid",
    )


def test_a_token_of_a_deleted_backend_is_refused(market: Market) -> None:
    from server_stub.models import MarketplaceBackend

    user = market.user_token()
    with market.backend.services.ctx.write() as session, session.begin():
        session.delete(session.get(MarketplaceBackend, market.tenant.id))
    assert_problem(
        send(market.client, ADMIN_CALLS[0], market.tenant.admin_token), 401, "token_invalid"
    )
    assert_problem(send(market.client, USER_CALLS[0], user), 401, "token_invalid")


# --- the backends' public keys ------------------------------------------------------------------


def jwks(market: Market, tenant: Tenant | None = None) -> httpx.Response:
    return market.client.get(f"/marketplace/backends/{(tenant or market.tenant).id}/jwks.json")


def kids(market: Market, tenant: Tenant | None = None) -> list[str]:
    r = jwks(market, tenant)
    assert r.status_code == 200, r.text
    return [k["kid"] for k in r.json()["keys"]]


def test_backend_jwks(market: Market) -> None:
    r = jwks(market)
    assert r.status_code == 200
    assert r.headers["cache-control"] == "public, max-age=86400"
    (key,) = r.json()["keys"]
    expected = public_jwk(market.tenant.key)
    assert key == {**expected, "kid": jwk_thumbprint(expected), "alg": "ES256", "use": "sig"}
    # The key verifies a token the backend signed.
    token = app_access_token(market)
    claims = jwt.decode(
        token,
        jwt.PyJWK(key).key,
        algorithms=["ES256"],
        audience=CHAT,
        options={"verify_exp": False, "verify_iat": False},  # the fake clock is not the wall's
    )
    assert claims["iss"] == market.tenant.id
    assert_problem(
        market.client.get("/marketplace/backends/no-such-backend/jwks.json"), 404, "not_found"
    )
    assert_problem(
        market.client.get("/marketplace/backends/a.b/jwks.json"), 422, "validation_error"
    )


def put_key(market: Market, jwk: dict[str, Any], tenant: Tenant | None = None) -> httpx.Response:
    return market.client.put(
        "/marketplace/backends/me/keys", json={"jwk": jwk}, headers=(tenant or market.tenant).admin
    )


def test_key_rotation_keeps_the_old_key_for_30_minutes(market: Market) -> None:
    clock = market.backend.clock
    old_kid = jwk_thumbprint(public_jwk(market.tenant.key))
    second = new_key()
    new_kid = jwk_thumbprint(public_jwk(second))
    r = put_key(market, public_jwk(second))
    assert r.status_code == 200, r.text
    assert r.json()["current_kid"] == new_kid and r.json()["backend_id"] == market.tenant.id
    assert [k["kid"] for k in r.json()["keys"]] == [new_kid, old_kid]
    assert kids(market) == [new_kid, old_kid]
    replaced_at = clock.now()

    # The same key again changes nothing (and is not audited again).
    assert put_key(market, public_jwk(second)).json()["keys"] == r.json()["keys"]
    assert [a for _, a in market.actions(None)].count("backend.key") == 1

    clock.set(replaced_at + timedelta(minutes=30) - timedelta(seconds=1))
    assert kids(market) == [new_kid, old_kid]
    clock.set(replaced_at + timedelta(minutes=30))
    assert kids(market) == [new_kid]

    # Two rotations in a row: both replaced keys are published, most recent first.
    third, fourth = new_key(), new_key()
    assert put_key(market, public_jwk(third)).status_code == 200
    clock.advance(60)
    assert put_key(market, public_jwk(fourth)).status_code == 200
    expected = [jwk_thumbprint(public_jwk(k)) for k in (fourth, third)] + [new_kid]
    assert kids(market) == expected
    # A key used before may come back; it becomes the current one.
    assert put_key(market, public_jwk(market.tenant.key)).json()["current_kid"] == old_kid
    assert kids(market)[0] == old_kid
    row = market.backend.services.marketplace.audit_trail(backend_id=market.tenant.id)[-1]
    assert row.action == "backend.key" and row.actor == f"backend:{market.tenant.id}"
    assert row.before == {"kid": expected[0]} and row.after == {"kid": old_kid}


def test_key_registration_refusals(market: Market) -> None:
    good = public_jwk(new_key())
    bad_point = {**good, "y": good["x"]}
    cases: dict[str, dict[str, Any]] = {
        "private member d": {**good, "d": good["x"]},
        "not on the curve": bad_point,
        "kid not the thumbprint": {**good, "kid": "abc"},
        "RSA": {**good, "kty": "RSA"},
        "another curve": {**good, "crv": "P-384"},
        "another alg": {**good, "alg": "ES384"},
        "short x": {**good, "x": good["x"][:-1]},
    }
    for name, jwk in cases.items():
        r = put_key(market, jwk)
        assert r.status_code == 422 and r.json()["code"] == "validation_error", (name, r.text)
        assert good["x"] not in r.text  # the key material is not echoed
    r = put_key(market, {**good, "d": good["x"]})
    assert ["body", "jwk", "d"] in [e["loc"] for e in r.json()["errors"]]
    # A key registered by another backend stays that backend's.
    other = new_tenant(market.backend, "Other")
    assert_problem(put_key(market, public_jwk(other.key)), 409, "already_exists")
    # With the optional members as agent.marketplace.public_jwk writes them, it is accepted.
    kid = jwk_thumbprint(good)
    r = put_key(market, {**good, "kid": kid, "alg": "ES256", "use": "sig"})
    assert r.status_code == 200 and r.json()["current_kid"] == kid
    assert kids(market)[0] == kid and kids(market, other) == [jwk_thumbprint(public_jwk(other.key))]


# --- the app side, against this server ----------------------------------------------------------


def test_the_app_side_verifier_accepts_what_the_marketplace_serves(
    market: Market, tmp_path: Path
) -> None:
    """``agent.marketplace`` end to end: a token the backend mints verifies with the JWKS this
    server publishes, the snapshot it signs entitles the backend, and a revocation shows at the
    next re-validation."""
    from agent.marketplace import AppTokenVerifier, BackendKeyCache, mint_app_token

    assert market.license("trial").status_code == 201
    assert market.install().status_code == 201
    clock = market.backend.clock
    license_key = market.backend.services.ctx.keys.signing_key("license").public_key
    assert isinstance(license_key, ec.EllipticCurvePublicKey)
    keys = BackendKeyCache(market.backend.url, clock=clock, cache_dir=tmp_path / "app")
    try:
        verifier = AppTokenVerifier(CHAT, keys, marketplace_key=license_key, clock=clock)
        token = mint_app_token(
            market.tenant.key,
            backend_id=market.tenant.id,
            user_id="user-7",
            app_id=CHAT,
            permissions=["chat:read"],
            clock=clock,
        )
        access = verifier.verify(token)
        assert (access.backend_id, access.user_id) == (market.tenant.id, "user-7")
        assert verifier.check_entitled(access)

        market.backend.services.marketplace.revoke_license(market.tenant.id, CHAT)
        clock.advance(5 * 60)  # the verifier's re-validation interval
        assert not verifier.check_entitled(access)
    finally:
        keys.close()
