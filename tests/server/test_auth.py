"""/auth and /devices on the real app over a real database (SQLite and PostgreSQL)."""

from __future__ import annotations

import base64
import json

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from agent.protocol import ACCESS_TOKEN_AUDIENCE, LEASE_AUDIENCE
from tests.conftest import Backend, BackendFactory
from tests.helpers.api import PASSWORD, assert_problem, bearer, fingerprint, register


def _login(backend: Backend, email: str, fp: str, password: str = PASSWORD) -> dict:
    r = backend.client.post(
        "/auth/login", json={"email": email, "password": password, "device_fingerprint": fp}
    )
    assert r.status_code == 200, r.text
    return r.json()


def test_register_login_and_license(backend: Backend) -> None:
    fp = fingerprint()
    reg = register(backend.client, "Alice@Example.com", fp)
    assert reg["user"]["email"] == "alice@example.com"
    assert reg["token_type"] == "Bearer"
    assert reg["exp"] - int(backend.clock.now().timestamp()) == 15 * 60
    login = _login(backend, "alice@example.com", fp)
    assert login["user"]["id"] == reg["user"]["id"]
    assert login["refresh_token"] != reg["refresh_token"]
    lic = backend.client.get("/license", headers=bearer(login["token"]))
    assert lic.status_code == 200
    assert lic.json()["plan"] == "free"
    assert lic.json()["device_binding"]["devices_used"] == 1


def test_duplicate_registration_and_wrong_password(backend: Backend) -> None:
    register(backend.client, "bob@example.com")
    r = backend.client.post(
        "/auth/register",
        json={
            "email": "BOB@example.com",
            "password": PASSWORD,
            "device_fingerprint": fingerprint(),
        },
    )
    assert_problem(r, 409, "already_exists")
    for email, password in [
        ("bob@example.com", "wrong password"),
        ("nobody@example.com", PASSWORD),
    ]:
        r = backend.client.post(
            "/auth/login",
            json={"email": email, "password": password, "device_fingerprint": fingerprint()},
        )
        body = assert_problem(r, 401, "invalid_credentials")
        assert PASSWORD not in r.text and "wrong password" not in r.text
        assert body["detail"] == "wrong e-mail or password"


def test_refresh_rotates_and_reuse_revokes_the_family(backend: Backend) -> None:
    fp = fingerprint()
    first = register(backend.client, fp=fp)
    r = backend.client.post(
        "/auth/refresh", json={"refresh_token": first["refresh_token"], "device_fingerprint": fp}
    )
    assert r.status_code == 200, r.text
    second = r.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert backend.client.get("/license", headers=bearer(second["token"])).status_code == 200

    # The first token comes back: the whole family is revoked, including the fresh tokens.
    r = backend.client.post(
        "/auth/refresh", json={"refresh_token": first["refresh_token"], "device_fingerprint": fp}
    )
    assert_problem(r, 401, "token_invalid")
    r = backend.client.post(
        "/auth/refresh", json={"refresh_token": second["refresh_token"], "device_fingerprint": fp}
    )
    assert_problem(r, 401, "token_invalid")
    assert_problem(
        backend.client.get("/license", headers=bearer(second["token"])), 401, "token_invalid"
    )
    # A new login still works: only that family is gone.
    r = backend.client.post(
        "/auth/login",
        json={"email": first["user"]["email"], "password": PASSWORD, "device_fingerprint": fp},
    )
    assert r.status_code == 200


def _refresh(backend: Backend, refresh_token: str, fp: str) -> httpx.Response:
    return backend.client.post(
        "/auth/refresh", json={"refresh_token": refresh_token, "device_fingerprint": fp}
    )


def _spent_family(backend: Backend) -> tuple[str, dict]:
    """A family whose first refresh token is spent: its fingerprint and the rotated tokens."""
    fp = fingerprint()
    first = register(backend.client, fp=fp)
    r = _refresh(backend, first["refresh_token"], fp)
    assert r.status_code == 200, r.text
    return first["refresh_token"], {**r.json(), "fp": fp}


def test_reuse_with_another_fingerprint_revokes_the_family_with_the_same_reply(
    backend: Backend,
) -> None:
    # Whoever replays a spent token, from whatever device, learns nothing more than any other
    # replayer, and the family ends either way: a copy of the token is out there.
    spent, rotated = _spent_family(backend)
    same_device = _refresh(backend, spent, rotated["fp"])
    stolen_spent, stolen_rotated = _spent_family(backend)
    other_device = _refresh(backend, stolen_spent, fingerprint())

    assert_problem(other_device, 401, "token_invalid")
    assert other_device.json()["detail"] == same_device.json()["detail"]
    for family in (rotated, stolen_rotated):
        assert_problem(
            _refresh(backend, family["refresh_token"], family["fp"]), 401, "token_invalid"
        )
        assert_problem(
            backend.client.get("/license", headers=bearer(family["token"])), 401, "token_invalid"
        )


def test_a_token_of_another_device_gets_the_reply_of_an_unknown_one(backend: Backend) -> None:
    reg = register(backend.client)
    other_device = _refresh(backend, reg["refresh_token"], fingerprint())
    unknown = _refresh(backend, "not-a-token-of-ours", fingerprint())
    assert_problem(other_device, 401, "token_invalid")
    assert other_device.json()["detail"] == unknown.json()["detail"]


def test_refresh_from_another_device_is_refused_without_burning_the_token(backend: Backend) -> None:
    fp = fingerprint()
    reg = register(backend.client, fp=fp)
    r = backend.client.post(
        "/auth/refresh",
        json={"refresh_token": reg["refresh_token"], "device_fingerprint": fingerprint()},
    )
    assert_problem(r, 401, "token_invalid")
    r = backend.client.post(
        "/auth/refresh", json={"refresh_token": reg["refresh_token"], "device_fingerprint": fp}
    )
    assert r.status_code == 200


def test_refresh_token_expires_after_30_days(backend: Backend) -> None:
    fp = fingerprint()
    reg = register(backend.client, fp=fp)
    backend.clock.advance(30 * 24 * 3600 + 1)
    r = backend.client.post(
        "/auth/refresh", json={"refresh_token": reg["refresh_token"], "device_fingerprint": fp}
    )
    assert_problem(r, 401, "token_expired")


def test_logout_ends_the_session(backend: Backend) -> None:
    fp = fingerprint()
    reg = register(backend.client, fp=fp)
    r = backend.client.post("/auth/logout", headers=bearer(reg["token"]), json={})
    assert r.status_code == 204
    assert_problem(
        backend.client.get("/license", headers=bearer(reg["token"])), 401, "token_invalid"
    )
    r = backend.client.post(
        "/auth/refresh", json={"refresh_token": reg["refresh_token"], "device_fingerprint": fp}
    )
    assert_problem(r, 401, "token_invalid")


def test_device_limit_list_and_deactivate(make_backend: BackendFactory) -> None:
    backend = make_backend()
    backend.services.plans.create("duo", monthly_quota=10, max_devices=2, features=[])
    backend.services.auth.create_user("carol@example.com", PASSWORD, "duo")
    first = _login(backend, "carol@example.com", fp1 := fingerprint())
    _login(backend, "carol@example.com", fingerprint())
    # The same device again is not a new device.
    again = _login(backend, "carol@example.com", fp1)
    r = backend.client.post(
        "/auth/login",
        json={
            "email": "carol@example.com",
            "password": PASSWORD,
            "device_fingerprint": fingerprint(),
        },
    )
    body = assert_problem(r, 403, "device_limit")
    assert body["devices_max"] == 2

    devices = backend.client.get("/devices", headers=bearer(again["token"])).json()
    assert devices["devices_max"] == 2
    assert len(devices["devices"]) == 2
    current = [d for d in devices["devices"] if d["current"]]
    other = [d for d in devices["devices"] if not d["current"]]
    assert len(current) == 1 and len(other) == 1

    r = backend.client.delete(f"/devices/{other[0]['id']}", headers=bearer(first["token"]))
    assert r.status_code == 204
    assert_problem(
        backend.client.delete(f"/devices/{other[0]['id']}", headers=bearer(first["token"])),
        404,
        "not_found",
    )
    # The freed slot takes a new device.
    _login(backend, "carol@example.com", fingerprint())


def test_deactivating_a_device_ends_its_sessions(backend: Backend) -> None:
    reg = register(backend.client)
    device_id = backend.client.get("/devices", headers=bearer(reg["token"])).json()["devices"][0][
        "id"
    ]
    assert (
        backend.client.delete(f"/devices/{device_id}", headers=bearer(reg["token"])).status_code
        == 204
    )
    assert_problem(
        backend.client.get("/license", headers=bearer(reg["token"])), 401, "token_invalid"
    )


def test_another_users_device_is_not_found(backend: Backend) -> None:
    a = register(backend.client)
    b = register(backend.client)
    b_device = backend.client.get("/devices", headers=bearer(b["token"])).json()["devices"][0]["id"]
    assert_problem(
        backend.client.delete(f"/devices/{b_device}", headers=bearer(a["token"])), 404, "not_found"
    )


# --- forged and expired access tokens -----------------------------------------------------------


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _claims(backend: Backend, genuine: str) -> dict:
    return jwt.decode(genuine, options={"verify_signature": False})


def _forgeries(backend: Backend, genuine: str) -> dict[str, str]:
    keys = backend.services.ctx.keys
    auth_key = keys.signing_key("auth")
    license_key = keys.signing_key("license")
    claims = _claims(backend, genuine)
    now = int(backend.clock.now().timestamp())
    header = jwt.get_unverified_header(genuine)
    h, p, s = genuine.split(".")
    public_pem = auth_key.public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def own(extra: dict, **headers: str) -> str:
        return jwt.encode(
            {**claims, **extra},
            auth_key.private_key,
            algorithm="RS256",
            headers={"kid": auth_key.kid, **headers},
        )

    return {
        "alg none": _b64({"alg": "none", "typ": "JWT"}) + "." + p + ".",
        "HS256 with the public key": _b64({"alg": "HS256", "kid": auth_key.kid})
        + "."
        + p
        + "."
        + base64.urlsafe_b64encode(
            __import__("hmac").new(public_pem, f"{h}.{p}".encode(), "sha256").digest()
        )
        .rstrip(b"=")
        .decode(),
        "stranger key with our kid": jwt.encode(
            claims, stranger, algorithm="RS256", headers={"kid": header["kid"]}
        ),
        "unknown kid": own({}, kid="no-such-kid"),
        "license key (ES256)": jwt.encode(
            claims, license_key.private_key, algorithm="ES256", headers={"kid": license_key.kid}
        ),
        "license kid on RS256": jwt.encode(
            claims, auth_key.private_key, algorithm="RS256", headers={"kid": license_key.kid}
        ),
        "tampered payload": h + "." + _b64({**claims, "sub": "someone-else"}) + "." + s,
        "wrong issuer": own({"iss": "evil"}),
        "lease audience": own({"aud": LEASE_AUDIENCE}),
        "expired": own({"exp": now - 3600, "iat": now - 7200, "nbf": now - 7200}),
        "not yet valid": own({"nbf": now + 3600}),
        "issued in the future": own({"iat": now + 3600}),
        "no jti": own({"jti": None}),
        "jku injection": own({}, jku="http://127.0.0.1:1/jwks.json"),
        "garbage": "not.a.token",
        "truncated": genuine[: len(genuine) // 2],
    }


def test_forged_access_tokens_are_refused(backend: Backend) -> None:
    reg = register(backend.client)
    genuine = reg["token"]
    assert _claims(backend, genuine)["aud"] == ACCESS_TOKEN_AUDIENCE
    assert backend.client.get("/license", headers=bearer(genuine)).status_code == 200
    forgeries = _forgeries(backend, genuine)
    assert len(forgeries) >= 12
    accepted = []
    for name, token in forgeries.items():
        r = backend.client.get("/license", headers=bearer(token))
        if r.status_code == 200:
            accepted.append(name)
        else:
            assert r.status_code == 401, (name, r.text)
            assert r.json()["code"] in ("token_invalid", "token_expired"), (name, r.text)
    # "jku injection" is signed by our own key: the header is simply ignored, never followed.
    assert accepted == ["jku injection"]


def test_expired_access_token_says_so(backend: Backend) -> None:
    reg = register(backend.client)
    backend.clock.advance(15 * 60 + 31)
    assert_problem(
        backend.client.get("/license", headers=bearer(reg["token"])), 401, "token_expired"
    )


def test_missing_or_malformed_authorization(backend: Backend) -> None:
    r = backend.client.get("/license")
    assert_problem(r, 401, "token_invalid")
    assert r.headers["www-authenticate"].startswith("Bearer")
    r = backend.client.get("/license", headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert_problem(r, 401, "token_invalid")


@pytest.mark.parametrize(
    "body",
    [
        {"email": "not-an-email", "password": PASSWORD, "device_fingerprint": "f" * 32},
        {"email": "a@example.com", "password": "Pa55!", "device_fingerprint": "f" * 32},
        {"email": "a@example.com", "password": PASSWORD, "device_fingerprint": "tiny"},
        {"email": "a@example.com", "password": PASSWORD, "device_fingerprint": "f\x00" * 16},
        {"email": "a@example.com", "password": PASSWORD, "device_fingerprint": "f" * 32, "x": 1},
        {"email": "a@example.com"},
    ],
)
def test_bad_registration_input_is_a_validation_problem(backend: Backend, body: dict) -> None:
    r = backend.client.post("/auth/register", json=body)
    problem = assert_problem(r, 422, "validation_error")
    assert problem["errors"]
    assert "Pa55!" not in r.text  # the rejected password is never echoed


def test_tokens_and_passwords_never_reach_the_logs(
    backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG", logger="tgflow")
    fp = fingerprint()
    reg = register(backend.client, fp=fp)
    r = backend.client.post(
        "/auth/refresh", json={"refresh_token": reg["refresh_token"], "device_fingerprint": fp}
    )
    backend.client.post(
        "/auth/refresh", json={"refresh_token": reg["refresh_token"], "device_fingerprint": fp}
    )
    text = "\n".join(f"{rec.getMessage()} {rec.__dict__}" for rec in caplog.records)
    assert "request" in text  # the access log did record the requests
    for secret in (PASSWORD, reg["refresh_token"], reg["token"], r.json()["refresh_token"]):
        assert secret not in text
