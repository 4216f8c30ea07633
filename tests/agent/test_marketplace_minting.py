"""Minting User App Access Tokens on a tenant backend, and the JWK it registers."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from agent.clock import FakeClock
from agent.marketplace import key_id, mint_app_token, public_jwk
from agent.marketplace.jwks import backend_key_from_jwk
from agent.protocol import jwk_thumbprint
from tests.helpers.fake_marketplace import APP, BACKEND_A, new_key
from tests.helpers.forgery import claims_of, header_of


def test_public_jwk_is_the_public_half_with_its_thumbprint_as_kid() -> None:
    key = new_key()
    jwk = public_jwk(key)
    assert set(jwk) == {"kty", "crv", "x", "y", "kid", "alg", "use"}
    assert (jwk["kty"], jwk["crv"], jwk["alg"], jwk["use"]) == ("EC", "P-256", "ES256", "sig")
    assert jwk["kid"] == jwk_thumbprint(jwk) == key_id(key) == key_id(key.public_key())
    assert public_jwk(key.public_key()) == jwk
    # The app side accepts exactly this entry, and it is the same key.
    accepted = backend_key_from_jwk(BACKEND_A, jwk)
    assert accepted.public_key.public_numbers() == key.public_key().public_numbers()
    assert key_id(new_key()) != jwk["kid"]


def test_coordinates_keep_their_leading_zero_bytes() -> None:
    # About one key in 128 has a coordinate below 2**248; its JWK must still be 32 bytes each.
    # Private scalars 1, 2, 3 … give the same keys on every run.
    key = next(
        k
        for k in (ec.derive_private_key(n, ec.SECP256R1()) for n in range(1, 5000))
        if min(k.public_key().public_numbers().x, k.public_key().public_numbers().y) < 2**248
    )
    jwk = public_jwk(key)
    assert len(jwk["x"]) == len(jwk["y"]) == 43
    assert backend_key_from_jwk(BACKEND_A, jwk).kid == jwk["kid"]


def test_mint_app_token_writes_the_contracts_claims() -> None:
    key, clock = new_key(), FakeClock()
    token = mint_app_token(
        key,
        backend_id=BACKEND_A,
        user_id="u-7",
        app_id=APP,
        permissions=["chat:read"],
        clock=clock,
    )
    assert header_of(token) == {"alg": "ES256", "typ": "JWT", "kid": key_id(key)}
    claims = claims_of(token)
    now = int(clock.now().timestamp())
    assert claims == {
        "iss": BACKEND_A,
        "sub": "u-7",
        "aud": APP,
        "typ": "app-access",
        "permissions": ["chat:read"],
        "jti": claims["jti"],
        "iat": now,
        "exp": now + 1800,
    }
    assert len(claims["jti"]) >= 16
    again = mint_app_token(key, backend_id=BACKEND_A, user_id="u-7", app_id=APP, clock=clock)
    assert claims_of(again)["jti"] != claims["jti"]
    assert claims_of(again)["permissions"] == []
    short = mint_app_token(
        key, backend_id=BACKEND_A, user_id="u", app_id=APP, ttl=timedelta(minutes=5), clock=clock
    )
    assert claims_of(short)["exp"] - claims_of(short)["iat"] == 300


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"ttl": timedelta(minutes=30, seconds=1)}, "ttl"),
        ({"ttl": timedelta(0)}, "ttl"),
        ({"private_key": ec.generate_private_key(ec.SECP384R1())}, "P-256"),
        ({"backend_id": "a/b"}, "backend id"),
        ({"app_id": ""}, "app id"),
        ({"user_id": ""}, "user_id"),
        ({"permissions": "chat:read"}, "permissions"),
        ({"permissions": ["ok", 3]}, "permissions"),
    ],
)
def test_mint_app_token_refuses_what_the_contract_forbids(
    changes: dict[str, Any], match: str
) -> None:
    arguments: dict[str, Any] = {
        "private_key": new_key(),
        "backend_id": BACKEND_A,
        "user_id": "u",
        "app_id": APP,
        "permissions": ["chat:read"],
    }
    key = changes.pop("private_key", arguments.pop("private_key"))
    arguments.pop("private_key", None)
    with pytest.raises(ValueError, match=match):
        mint_app_token(key, **(arguments | changes))
