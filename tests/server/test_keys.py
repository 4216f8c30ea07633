"""Signing keys: files, RFC 7638 kids, pins, JWKS, rotation; and `tgflow-server keys pins`."""

from __future__ import annotations

import base64
import hashlib
import stat
from datetime import timedelta
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from agent.protocol import jwk_thumbprint
from server_stub.cli import main as cli_main
from server_stub.clock import FakeClock
from server_stub.keys import KeyStore
from tests.helpers.api import assert_problem, bearer, register
from tests.helpers.backend import BackendFactory


def _pin_of_jwk(jwk: dict) -> str:
    def num(v: str) -> int:
        return int.from_bytes(base64.urlsafe_b64decode(v + "=" * (-len(v) % 4)), "big")

    key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey
    if jwk["kty"] == "RSA":
        key = rsa.RSAPublicNumbers(num(jwk["e"]), num(jwk["n"])).public_key()
    else:
        key = ec.EllipticCurvePublicNumbers(
            num(jwk["x"]), num(jwk["y"]), ec.SECP256R1()
        ).public_key()
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return "sha256/" + base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode()


def test_thumbprint_matches_rfc7638_example() -> None:
    # RFC 7638, section 3.1.
    jwk = {
        "kty": "RSA",
        "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSo"
        "c_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR"
        "0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWh"
        "AI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
        "e": "AQAB",
        "alg": "RS256",
        "kid": "2011-04-29",
    }
    assert jwk_thumbprint(jwk) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def test_keys_are_created_once_with_private_files(tmp_path: Path) -> None:
    lifetimes = {"auth": timedelta(hours=72), "license": timedelta(days=400)}
    store = KeyStore(tmp_path / "keys", FakeClock(), lifetimes).ensure()
    auth, lic = store.signing_key("auth"), store.signing_key("license")
    assert auth.alg == "RS256" and isinstance(auth.private_key, rsa.RSAPrivateKey)
    assert auth.private_key.key_size >= 2048
    assert lic.alg == "ES256" and isinstance(lic.private_key, ec.EllipticCurvePrivateKey)
    for key in (auth, lic):
        assert key.kid == jwk_thumbprint(key.jwk())
        mode = stat.S_IMODE((tmp_path / "keys" / f"{key.kid}.pem").stat().st_mode)
        assert mode == 0o600
    assert stat.S_IMODE((tmp_path / "keys").stat().st_mode) == 0o700
    again = KeyStore(tmp_path / "keys", FakeClock(), lifetimes).ensure()
    assert {k.kid for k in again.all_keys()} == {auth.kid, lic.kid}


def test_served_jwks_matches_cli_pins(
    make_backend: BackendFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    backend = make_backend()
    jwks = backend.client.get("/.well-known/jwks.json").json()
    served = {k["kid"]: _pin_of_jwk(k) for k in jwks["keys"]}
    assert {k["alg"] for k in jwks["keys"]} == {"RS256", "ES256"}
    assert all("d" not in k and "p" not in k for k in jwks["keys"])  # public halves only

    assert cli_main(["keys", "pins", "--data-dir", str(backend.settings.data_dir)]) == 0
    out = capsys.readouterr().out.splitlines()
    printed = {
        line.split()[2]: line.split()[3] for line in out if line.startswith(("auth", "license"))
    }
    assert printed == served
    auth_kid = next(k["kid"] for k in jwks["keys"] if k["alg"] == "RS256")
    license_kid = next(k["kid"] for k in jwks["keys"] if k["alg"] == "ES256")
    pins = f"{served[auth_kid]},{served[license_kid]}"
    assert out[-1] == f"jwt_public_key_fingerprint = {pins}"


def test_rotation_keeps_the_old_key_until_its_tokens_expire(make_backend: BackendFactory) -> None:
    backend = make_backend()
    keys = backend.services.ctx.keys
    old = keys.signing_key("auth")
    token = register(backend.client)["token"]

    new = keys.rotate("auth")
    assert new.kid != old.kid and keys.signing_key("auth").kid == new.kid
    kids = {k["kid"] for k in backend.client.get("/.well-known/jwks.json").json()["keys"]}
    assert {old.kid, new.kid} <= kids
    assert backend.client.get("/license", headers=bearer(token)).status_code == 200  # old still ok
    fresh = register(backend.client)["token"]
    assert jwt.get_unverified_header(fresh)["kid"] == new.kid

    backend.clock.advance(72 * 3600 + 1)
    kids = {k["kid"] for k in backend.client.get("/.well-known/jwks.json").json()["keys"]}
    assert old.kid not in kids and new.kid in kids
    retired = next(k for k in keys.all_keys() if k.kid == old.kid)
    assert keys.state(retired) == "expired"
    # A token signed by the retired key after its publication ended is refused.
    claims = jwt.decode(fresh, options={"verify_signature": False})
    now = int(backend.clock.now().timestamp())
    stale = jwt.encode(
        {**claims, "iat": now, "nbf": now, "exp": now + 600},
        old.private_key,
        algorithm="RS256",
        headers={"kid": old.kid},
    )
    assert_problem(backend.client.get("/license", headers=bearer(stale)), 401, "token_invalid")


def test_cli_rotation_is_listed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = str(tmp_path / "data")
    assert cli_main(["demo", "--no-run", "--data-dir", data]) == 0  # creates the keys
    capsys.readouterr()
    assert cli_main(["keys", "list", "--data-dir", data]) == 0
    before = capsys.readouterr().out
    assert before.count("active") == 2
    assert cli_main(["keys", "rotate", "--purpose", "license", "--data-dir", data]) == 0
    assert "rotated license" in capsys.readouterr().out
    assert cli_main(["keys", "list", "--data-dir", data]) == 0
    after = capsys.readouterr().out
    assert after.count("active") == 2 and after.count("retired (published)") == 1
