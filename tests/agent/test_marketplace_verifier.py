"""The app-side verifier of User App Access Tokens and the entitlement re-validation.

Everything goes over HTTP to a stand-in marketplace on an ephemeral port (its hit list shows each
fetch); time comes from a FakeClock, so nothing sleeps.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from agent.clock import FakeClock
from agent.errors import LicenseError, TokenExpired, TokenInvalid, TokenRejected, UntrustedKey
from agent.key_pins import PinnedKeySet
from agent.marketplace import (
    AppAccess,
    AppTokenExpired,
    AppTokenInvalid,
    AppTokenVerifier,
    BackendKeyCache,
    BackendNotEntitled,
    EntitlementsUnavailable,
    MarketplaceError,
    SnapshotInvalid,
    UnknownSigningKey,
    key_id,
    public_jwk,
)
from agent.protocol import ErrorCode, public_key_pin
from tests.helpers.fake_marketplace import (
    APP,
    BACKEND_A,
    BACKEND_B,
    FakeMarketplace,
    World,
    entitlements_path,
    jwks_path,
    make_world,
    new_key,
    sign_snapshot,
)
from tests.helpers.forgery import b64url, claims_of, compose, header_of, hs256, unsigned

JWKS_A, JWKS_B = jwks_path(BACKEND_A), jwks_path(BACKEND_B)
SNAPSHOT = entitlements_path()


def es256(key: ec.EllipticCurvePrivateKey, claims: dict[str, Any], **headers: Any) -> str:
    """Sign ``claims`` as given (no checks), with ``kid`` = the key's own unless overridden."""
    return jwt.encode(claims, key, algorithm="ES256", headers={"kid": key_id(key), **headers})


def resigned(w: World, key: ec.EllipticCurvePrivateKey | None = None, **changes: Any) -> str:
    """A genuine token of backend A with ``changes`` to its claims (None drops a claim)."""
    claims = claims_of(w.token())
    for name, value in changes.items():
        if value is None:
            claims.pop(name, None)
        else:
            claims[name] = value
    return es256(key or w.key_a, claims)


# --- a valid token ------------------------------------------------------------------------------


def test_a_valid_token_is_accepted_and_says_what_it_grants(world: World) -> None:
    token = world.token(user_id="u-42", permissions=("chat:read",), jti="jti-1")
    access = world.verifier.verify(token)
    assert access == AppAccess(
        backend_id=BACKEND_A,
        user_id="u-42",
        app_id=APP,
        permissions=("chat:read",),
        jti="jti-1",
        expires_at=world.clock.now() + timedelta(minutes=30),
        issued_at=world.clock.now(),
        kid=key_id(world.key_a),
        claims={},
    )
    assert access.has_permission("chat:read") and not access.has_permission("chat:write")
    assert world.market.hits == [JWKS_A]  # the first token of a backend fetches its keys once


def test_verify_does_no_io_while_the_key_is_cached(world: World) -> None:
    tokens = [world.token(user_id=f"user-{i}") for i in range(100)]
    world.verifier.verify(tokens[0])
    assert world.market.total() == 1
    for i, token in enumerate(tokens):
        assert world.verifier.verify(token).user_id == f"user-{i}"
        world.clock.advance(15)  # 25 minutes in all: every token is still valid
    assert world.market.total() == 1


def test_tokens_of_two_backends_use_each_backends_own_keys(world: World) -> None:
    a = world.verifier.verify(world.token())
    b = world.verifier.verify(world.token(world.key_b, backend_id=BACKEND_B))
    assert (a.backend_id, b.backend_id) == (BACKEND_A, BACKEND_B)
    assert world.keys.kids(BACKEND_A) == {key_id(world.key_a)}
    assert world.keys.kids(BACKEND_B) == {key_id(world.key_b)}
    assert sorted(world.market.hits) == sorted([JWKS_A, JWKS_B])


# --- claims -------------------------------------------------------------------------------------


def test_a_token_for_another_app_is_refused(world: World) -> None:
    with pytest.raises(AppTokenInvalid, match=r"(?i)audience"):
        world.verifier.verify(world.token(app_id="other-app"))
    with pytest.raises(AppTokenInvalid, match=r"(?i)audience|claim format"):
        world.verifier.verify(resigned(world, aud=[APP]))  # a list is not the app's id
    with pytest.raises(AppTokenInvalid, match="aud"):
        world.verifier.verify(resigned(world, aud=None))


def test_a_key_of_backend_a_never_verifies_a_token_claiming_backend_b(world: World) -> None:
    # A's key, A's kid, iss B: the kid is looked up among B's keys only.
    forged = world.token(backend_id=BACKEND_B)  # signed with key_a
    assert header_of(forged)["kid"] == key_id(world.key_a)
    with pytest.raises(UnknownSigningKey, match=BACKEND_B):
        world.verifier.verify(forged)
    assert world.market.hits == [JWKS_B]
    # A's key with B's kid in the header: B's key is found, and A's signature fails with it.
    b_kid = es256(world.key_a, claims_of(forged), kid=key_id(world.key_b))
    with pytest.raises(AppTokenInvalid, match="Signature verification"):
        world.verifier.verify(b_kid)
    # Both backends' keys are known now, and the forgery still fails; A's own token passes.
    assert world.verifier.verify(world.token()).backend_id == BACKEND_A
    with pytest.raises(UnknownSigningKey):
        world.verifier.verify(forged)


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"typ": "entitlements"}, "type 'entitlements'"),
        ({"typ": None}, '"typ"'),
        ({"sub": None}, '"sub"'),
        ({"sub": ""}, "sub or jti"),
        ({"jti": None}, '"jti"'),
        ({"jti": 7}, "sub or jti|JWT ID must be a string"),
        ({"permissions": None}, '"permissions"'),
        ({"permissions": "chat:read"}, "permissions"),
        ({"permissions": ["chat:read", 1]}, "permissions"),
        ({"iat": None}, '"iat"'),
        ({"exp": None}, '"exp"'),
        ({"exp": "never"}, "exp|time claims"),
        ({"iss": "../../apps/chat-app/entitlements?x="}, "valid issuing backend"),
        ({"iss": None}, "valid issuing backend"),
    ],
)
def test_malformed_claims_are_refused(world: World, changes: dict[str, Any], match: str) -> None:
    with pytest.raises(AppTokenInvalid, match=match):
        world.verifier.verify(resigned(world, **changes))


def test_a_token_living_longer_than_30_minutes_is_refused(world: World) -> None:
    now = int(world.clock.now().timestamp())
    assert world.verifier.verify(resigned(world, iat=now, exp=now + 1800)).user_id == "user-1"
    with pytest.raises(AppTokenInvalid, match="more than the 1800 s"):
        world.verifier.verify(resigned(world, iat=now, exp=now + 1801))


# --- times --------------------------------------------------------------------------------------


def test_expiry_is_checked_with_at_most_10_seconds_leeway(world: World) -> None:
    token = world.token(ttl=timedelta(minutes=5))
    world.clock.advance(300 + 10)
    assert world.verifier.verify(token).user_id == "user-1"
    world.clock.advance(1)
    with pytest.raises(AppTokenExpired, match="expired") as refused:
        world.verifier.verify(token)
    assert isinstance(refused.value, TokenExpired)
    assert refused.value.code == ErrorCode.TOKEN_EXPIRED


def test_a_token_not_yet_valid_is_refused_beyond_the_leeway(world: World) -> None:
    now = int(world.clock.now().timestamp())
    within = resigned(world, iat=now, nbf=now + 10, exp=now + 600)
    beyond = resigned(world, iat=now, nbf=now + 11, exp=now + 600)
    assert world.verifier.verify(within).user_id == "user-1"
    with pytest.raises(AppTokenInvalid, match="not valid before"):
        world.verifier.verify(beyond)
    # A backend whose clock runs ahead: iat up to 10 s in the future passes, 11 s does not.
    ahead = world.token(clock=_shifted(world, 10))
    assert world.verifier.verify(ahead).user_id == "user-1"
    with pytest.raises(AppTokenInvalid, match="issued in the future"):
        world.verifier.verify(world.token(clock=_shifted(world, 11)))


def _shifted(world: World, seconds: float) -> FakeClock:
    return FakeClock(world.clock.now() + timedelta(seconds=seconds))


@pytest.mark.parametrize("leeway", [-1, 11, 60])
def test_a_leeway_beyond_10_seconds_is_refused(world: World, leeway: int) -> None:
    with pytest.raises(ValueError, match="leeway"):
        AppTokenVerifier(APP, world.keys, marketplace_key=world.license.public_key(), leeway=leeway)


def test_a_smaller_leeway_is_honoured(world: World) -> None:
    strict = AppTokenVerifier(
        APP, world.keys, marketplace_key=world.license.public_key(), clock=world.clock, leeway=0
    )
    token = world.token(ttl=timedelta(minutes=1))
    world.clock.advance(60)
    assert strict.verify(token).user_id == "user-1"
    world.clock.advance(1)
    with pytest.raises(AppTokenExpired):
        strict.verify(token)


# --- algorithms and headers ---------------------------------------------------------------------


def _public_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _alg_none(w: World) -> str:
    return compose({"alg": "none", "kid": key_id(w.key_a)}, claims_of(w.token()), unsigned)


def _alg_none_capitalised(w: World) -> str:
    return compose({"alg": "None", "kid": key_id(w.key_a)}, claims_of(w.token()), unsigned)


def _hs256_public_pem(w: World) -> str:
    header = {"alg": "HS256", "kid": key_id(w.key_a)}
    return compose(header, claims_of(w.token()), hs256(_public_pem(w.key_a)))


def _hs256_public_jwk(w: World) -> str:
    secret = json.dumps(public_jwk(w.key_a)).encode()
    return compose({"alg": "HS256", "kid": key_id(w.key_a)}, claims_of(w.token()), hs256(secret))


def _rs256(w: World) -> str:
    attacker = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return jwt.encode(claims_of(w.token()), attacker, "RS256", headers={"kid": key_id(w.key_a)})


def _es384(w: World) -> str:
    p384 = ec.generate_private_key(ec.SECP384R1())
    return jwt.encode(claims_of(w.token()), p384, "ES384", headers={"kid": key_id(w.key_a)})


def _es256_header_lies(w: World) -> str:
    # The header says ES256, the signature is an HMAC with the public key: still refused.
    header = {"alg": "ES256", "kid": key_id(w.key_a)}
    return compose(header, claims_of(w.token()), hs256(_public_pem(w.key_a)))


def _no_kid(w: World) -> str:
    return jwt.encode(claims_of(w.token()), w.key_a, "ES256")


def _crit(w: World) -> str:
    return es256(w.key_a, claims_of(w.token()), crit=["exp"])


def _tampered(w: World) -> str:
    header, _, signature = w.token().split(".")
    payload = b64url(json.dumps({**claims_of(w.token()), "sub": "admin"}).encode())
    return f"{header}.{payload}.{signature}"


def _attacker_key(w: World) -> str:
    return w.token(new_key())  # its own kid: A publishes no such key


ALGORITHM_FORGERIES: dict[str, tuple[Callable[[World], str], type[TokenRejected], str]] = {
    "alg-none": (_alg_none, AppTokenInvalid, "not 'none'"),
    "alg-none-capitalised": (_alg_none_capitalised, AppTokenInvalid, "not 'None'"),
    "hs256-with-the-public-key-pem": (_hs256_public_pem, AppTokenInvalid, "not 'HS256'"),
    "hs256-with-the-public-jwk": (_hs256_public_jwk, AppTokenInvalid, "not 'HS256'"),
    "rs256": (_rs256, AppTokenInvalid, "not 'RS256'"),
    "es384": (_es384, AppTokenInvalid, "not 'ES384'"),
    "es256-header-over-an-hmac": (_es256_header_lies, AppTokenInvalid, "Signature|malformed"),
    "no-kid": (_no_kid, AppTokenInvalid, r"\(kid\)"),
    "crit-header": (_crit, AppTokenInvalid, "(?i)critical extension|header extensions"),
    "tampered-payload": (_tampered, AppTokenInvalid, "Signature verification"),
    "attackers-own-key": (_attacker_key, UnknownSigningKey, "no usable key"),
    "garbage": (lambda w: "a.b.c", AppTokenInvalid, "malformed"),
    "two-segments": (lambda w: w.token().rsplit(".", 1)[0], AppTokenInvalid, "compact JWS"),
    "empty": (lambda w: "", AppTokenInvalid, "empty"),
    "oversized": (lambda w: "e30." + "A" * 9000 + ".AA", AppTokenInvalid, "too long"),
}


@pytest.mark.parametrize("name", sorted(ALGORITHM_FORGERIES))
def test_forged_tokens_are_refused(world: World, name: str) -> None:
    build, expected, match = ALGORITHM_FORGERIES[name]
    token = build(world)
    world.verifier.verify(world.token())  # A's keys are cached: a refusal is not a lookup miss
    with pytest.raises(expected, match=match) as refused:
        world.verifier.verify(token)
    assert type(refused.value) is expected
    assert isinstance(refused.value, TokenRejected | MarketplaceError)


@pytest.mark.parametrize("alg", ["none", "HS256", "RS256", "ES384", "PS256", "EdDSA"])
def test_a_wrong_algorithm_is_refused_before_any_key_lookup(world: World, alg: str) -> None:
    token = compose({"alg": alg, "kid": "some-kid"}, claims_of(world.token()), unsigned)
    with pytest.raises(AppTokenInvalid, match="must be signed with ES256"):
        world.verifier.verify(token)
    assert world.market.hits == []


@pytest.mark.parametrize("header", ["jku", "x5u", "jwk", "x5c"])
def test_key_location_headers_are_refused_and_never_fetched(
    world: World, market: FakeMarketplace, header: str
) -> None:
    attacker_site = FakeMarketplace()
    try:
        attacker = new_key()
        attacker_site.serve("/jwks.json", {"keys": [public_jwk(attacker)]})
        values = {
            "jku": f"{attacker_site.url}/jwks.json",
            "x5u": f"{attacker_site.url}/cert.pem",
            "jwk": public_jwk(attacker),
            "x5c": ["MIIB"],
        }
        claims = claims_of(world.token())
        for signer in (attacker, world.key_a):  # a stranger's key, and A's genuine key
            token = es256(signer, claims, **{header: values[header]})
            with pytest.raises(AppTokenInvalid, match="key-location headers"):
                world.verifier.verify(token)
        assert attacker_site.hits == []
        assert market.hits == []  # refused before any lookup at all
        # The attacker's site does answer: a direct request shows up in its hit list.
        world.keys.http_client().get(f"{attacker_site.url}/probe")
        assert attacker_site.hits == ["/probe"]
    finally:
        attacker_site.stop()


def test_every_refusal_is_a_typed_license_error(world: World) -> None:
    cases = [
        (world.token(app_id="other-app"), AppTokenInvalid, TokenInvalid, ErrorCode.TOKEN_INVALID),
        (world.token(new_key()), UnknownSigningKey, UntrustedKey, ErrorCode.TOKEN_INVALID),
    ]
    for token, cls, agent_cls, code in cases:
        with pytest.raises(cls) as refused:
            world.verifier.verify(token)
        assert isinstance(refused.value, agent_cls)
        assert isinstance(refused.value, MarketplaceError)
        assert isinstance(refused.value, LicenseError)
        assert refused.value.code == code


# --- entitlement re-validation ------------------------------------------------------------------


def test_access_is_granted_then_refused_at_the_first_revalidation_after_removal(
    world: World,
) -> None:
    access = world.verifier.verify(world.token())
    assert world.verifier.revalidate(access) is access
    assert world.market.count(SNAPSHOT) == 1
    assert world.verifier.check_entitled(access)
    # The operator revokes A's license: the next snapshot lists B only.
    world.market.serve_snapshot(world.snapshot([BACKEND_B]))
    for _ in range(4):
        world.clock.advance(74)  # 296 s: still within the 5 minutes
        assert world.verifier.revalidate(access) is access
    world.clock.advance(3)  # 299 s
    assert world.verifier.check_entitled(access)
    assert world.market.count(SNAPSHOT) == 1
    world.clock.advance(1)  # 300 s: a revalidation is due
    with pytest.raises(BackendNotEntitled, match=BACKEND_A) as refused:
        world.verifier.revalidate(access)
    assert refused.value.code == ErrorCode.FORBIDDEN
    assert not world.verifier.check_entitled(access)
    assert world.market.count(SNAPSHOT) == 2
    # B's users keep their access from the same snapshot, without a further fetch.
    b_access = world.verifier.verify(world.token(world.key_b, backend_id=BACKEND_B))
    assert world.verifier.revalidate(b_access) is b_access
    assert world.market.count(SNAPSHOT) == 2
    snapshot = world.verifier.entitlements()
    assert snapshot is not None and snapshot.backends == {BACKEND_B}


def test_a_backend_added_to_the_snapshot_gains_access_at_the_next_revalidation(
    world: World,
) -> None:
    world.market.serve_snapshot(world.snapshot([BACKEND_B]))
    access = world.verifier.verify(world.token())
    assert not world.verifier.check_entitled(access)
    world.market.serve_snapshot(world.snapshot([BACKEND_A, BACKEND_B]))
    world.clock.advance(299)
    assert not world.verifier.check_entitled(access)
    world.clock.advance(1)
    assert world.verifier.check_entitled(access)
    assert world.market.count(SNAPSHOT) == 2


def test_revalidate_refuses_an_expired_access(world: World) -> None:
    access = world.verifier.verify(world.token(ttl=timedelta(minutes=2)))
    world.clock.advance(130)
    assert world.verifier.revalidate(access) is access
    world.clock.advance(1)
    with pytest.raises(AppTokenExpired):
        world.verifier.revalidate(access)
    # check_entitled is about the backend only.
    assert world.verifier.check_entitled(access)


def test_revalidate_refuses_an_access_to_another_app(world: World) -> None:
    access = world.verifier.verify(world.token())
    other = AppAccess(**{**access.__dict__, "app_id": "other-app"})
    with pytest.raises(AppTokenInvalid, match="other-app"):
        world.verifier.revalidate(other)


def _other_key(w: World) -> str:
    return sign_snapshot(new_key(), w.clock, [BACKEND_A])


def _a_backend_key(w: World) -> str:
    return sign_snapshot(w.key_a, w.clock, [BACKEND_A])  # a tenant signing its own entitlement


def _hs256_license_pem(w: World) -> str:
    claims = claims_of(w.snapshot([BACKEND_A]))
    return compose({"alg": "HS256"}, claims, hs256(_public_pem(w.license)))


def _unsigned(w: World) -> str:
    return compose({"alg": "none"}, claims_of(w.snapshot([BACKEND_A])), unsigned)


def _tampered_snapshot(w: World) -> str:
    genuine = w.snapshot([BACKEND_B])
    header, _, signature = genuine.split(".")
    payload = b64url(json.dumps({**claims_of(genuine), "backends": [BACKEND_A]}).encode())
    return f"{header}.{payload}.{signature}"


SNAPSHOT_FORGERIES: dict[str, Callable[[World], str]] = {
    "signed-by-another-key": _other_key,
    "signed-by-a-backend-key": _a_backend_key,
    "hs256-with-the-license-public-key": _hs256_license_pem,
    "unsigned": _unsigned,
    "tampered-backends": _tampered_snapshot,
    "for-another-app": lambda w: w.snapshot([BACKEND_A], app_id="other-app"),
    "wrong-audience": lambda w: w.snapshot([BACKEND_A], aud="chat-app"),
    "wrong-typ": lambda w: w.snapshot([BACKEND_A], typ="app-access"),
    "wrong-issuer": lambda w: w.snapshot([BACKEND_A], iss="someone"),
    "no-exp": lambda w: w.snapshot([BACKEND_A], exp=None),
    "expired": lambda w: w.snapshot([BACKEND_A], iat=1, exp=2),
    "backends-not-a-list": lambda w: w.snapshot([BACKEND_A], backends=BACKEND_A),
    "an-app-access-token": lambda w: w.token(),
    "garbage": lambda w: "garbage",
}


@pytest.mark.parametrize("name", sorted(SNAPSHOT_FORGERIES))
def test_a_forged_snapshot_is_refused(world: World, name: str) -> None:
    forged = SNAPSHOT_FORGERIES[name](world)
    with pytest.raises(SnapshotInvalid):
        world.verifier.verify_snapshot(forged)
    world.market.serve_snapshot(forged)
    access = world.verifier.verify(world.token())
    with pytest.raises(EntitlementsUnavailable, match="access is refused"):
        world.verifier.revalidate(access)
    assert not world.verifier.check_entitled(access)
    assert world.verifier.entitlements() is None
    assert world.market.count(SNAPSHOT) == 1  # the second call did not refetch (1 min)


def test_a_forged_snapshot_never_replaces_a_good_one(world: World) -> None:
    access = world.verifier.verify(world.token())
    assert world.verifier.check_entitled(access)
    # A forgery that would remove A is served: it is ignored, the good snapshot stays in use.
    world.market.serve_snapshot(sign_snapshot(new_key(), world.clock, [BACKEND_B]))
    world.clock.advance(300)
    assert world.verifier.check_entitled(access)
    assert world.market.count(SNAPSHOT) == 2


def test_an_older_snapshot_never_replaces_a_newer_one(world: World) -> None:
    old = world.snapshot([BACKEND_B])  # signed now, before the current one
    world.clock.advance(60)
    world.market.serve_snapshot(world.snapshot([BACKEND_A]))
    access = world.verifier.verify(world.token())
    assert world.verifier.check_entitled(access)
    world.market.serve_snapshot(old)  # replayed
    world.clock.advance(300)
    assert world.verifier.check_entitled(access)
    assert world.market.count(SNAPSHOT) == 2


def _fail_with_500(m: FakeMarketplace) -> None:
    m.serve(SNAPSHOT, b'{"code": "internal_error"}', status=500)


def _fail_with_garbage(m: FakeMarketplace) -> None:
    m.serve(SNAPSHOT, b"<html>gateway</html>")


def _fail_without_snapshot(m: FakeMarketplace) -> None:
    m.serve(SNAPSHOT, {"snapshot": None})


def _fail_by_stopping(m: FakeMarketplace) -> None:
    m.stop()


SNAPSHOT_FAILURES: dict[str, Callable[[FakeMarketplace], None]] = {
    "http-500": _fail_with_500,
    "not-json": _fail_with_garbage,
    "no-snapshot-member": _fail_without_snapshot,
    "server-stopped": _fail_by_stopping,
}


@pytest.mark.parametrize("failure", sorted(SNAPSHOT_FAILURES))
def test_a_failed_fetch_keeps_the_last_good_snapshot_until_it_expires(
    world: World, failure: str
) -> None:
    access = world.verifier.verify(world.token(ttl=timedelta(minutes=30)))
    assert world.verifier.check_entitled(access)  # t=0: fetched, exp = t + 600 s
    snapshot = world.verifier.entitlements()
    assert snapshot is not None
    assert snapshot.expires_at == world.clock.now() + timedelta(seconds=600)
    SNAPSHOT_FAILURES[failure](world.market)
    reachable = not world.market.stopped
    hits = world.market.count(SNAPSHOT)

    world.clock.advance(300)  # due: the fetch fails, the good snapshot stays in use
    assert world.verifier.revalidate(access) is access
    hits += reachable
    assert world.market.count(SNAPSHOT) == hits
    world.clock.advance(59)  # a failed fetch is retried once a minute, no more often
    assert world.verifier.check_entitled(access)
    assert world.market.count(SNAPSHOT) == hits
    world.clock.advance(1)
    assert world.verifier.check_entitled(access)
    hits += reachable
    assert world.market.count(SNAPSHOT) == hits

    world.clock.advance(250)  # t = 610 s: exp + the 10 s leeway
    assert world.verifier.check_entitled(access)
    world.clock.advance(1)  # beyond: fail closed
    with pytest.raises(EntitlementsUnavailable):
        world.verifier.revalidate(access)
    assert not world.verifier.check_entitled(access)
    assert world.verifier.entitlements() is None


def test_access_comes_back_once_the_marketplace_answers_again(world: World) -> None:
    access = world.verifier.verify(world.token())
    world.market.serve(SNAPSHOT, b"", status=503)
    assert not world.verifier.check_entitled(access)  # never had a snapshot: fail closed
    world.market.serve_snapshot(world.snapshot([BACKEND_A]))
    world.clock.advance(30)
    assert not world.verifier.check_entitled(access)  # the retry waits a minute
    world.clock.advance(30)
    assert world.verifier.check_entitled(access)
    assert world.market.count(SNAPSHOT) == 2


def test_refresh_entitlements_fetches_now(world: World) -> None:
    assert world.verifier.refresh_entitlements()
    assert world.verifier.refresh_entitlements()
    assert world.market.count(SNAPSHOT) == 2
    access = world.verifier.verify(world.token())
    assert world.verifier.check_entitled(access)
    assert world.market.count(SNAPSHOT) == 2  # a fresh snapshot is at hand
    world.market.serve(SNAPSHOT, b"", status=500)
    assert not world.verifier.refresh_entitlements()
    assert world.verifier.check_entitled(access)  # kept


def test_an_injected_fetch_is_used_and_its_failures_fail_closed(
    market: FakeMarketplace, tmp_path: Path
) -> None:
    calls: list[str] = []
    answers: list[str | Exception] = []

    def fetch(app_id: str) -> str:
        calls.append(app_id)
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    with make_world(market, tmp_path, entitlements_fetch=fetch) as w:
        answers.append(RuntimeError("the message bus is down"))
        access = w.verifier.verify(w.token())
        assert not w.verifier.check_entitled(access)
        answers.append(w.snapshot([BACKEND_A]))
        w.clock.advance(60)
        assert w.verifier.check_entitled(access)
    assert calls == [APP, APP]
    assert market.count(SNAPSHOT) == 0  # the default HTTP fetch was not used


def test_a_pinned_marketplace_key_set_verifies_the_snapshot(
    market: FakeMarketplace, tmp_path: Path
) -> None:
    with make_world(market, tmp_path / "app") as w:
        wk = "/.well-known/jwks.json"
        market.serve(wk, {"keys": [public_jwk(w.license), public_jwk(new_key())]})
        pin = public_key_pin(w.license.public_key())
        pins = PinnedKeySet(market.url, pin, tmp_path / "pins", clock=w.clock)
        verifier = AppTokenVerifier(APP, w.keys, marketplace_key=pins, clock=w.clock)
        access = verifier.verify(w.token())
        assert verifier.check_entitled(access)
        assert market.count(wk) == 1  # the snapshot's kid was unknown: the JWKS was fetched
        assert pins.kids() == {key_id(w.license)}  # the other published key is not pinned
        # A snapshot signed by a published but unpinned key is refused, after a refetch.
        stranger = new_key()
        market.serve(wk, {"keys": [public_jwk(w.license), public_jwk(stranger)]})
        w.clock.advance(60)
        with pytest.raises(SnapshotInvalid, match="pinned"):
            verifier.verify_snapshot(sign_snapshot(stranger, w.clock, [BACKEND_A]))
        assert market.count(wk) == 2
        assert pins.kids() == {key_id(w.license)}
        unnamed = jwt.encode(claims_of(w.snapshot([BACKEND_A])), w.license, algorithm="ES256")
        with pytest.raises(SnapshotInvalid, match=r"\(kid\)"):
            verifier.verify_snapshot(unnamed)
        rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
        with pytest.raises(TypeError):
            AppTokenVerifier(APP, w.keys, marketplace_key=rsa_key)  # type: ignore[arg-type]


def test_revalidation_is_shared_across_tokens_and_users(world: World) -> None:
    accesses = [world.verifier.verify(world.token(user_id=f"u{i}")) for i in range(50)]
    for access in accesses:
        assert world.verifier.check_entitled(access)
    assert world.market.count(SNAPSHOT) == 1


# --- async --------------------------------------------------------------------------------------


def test_the_async_variants_behave_like_the_blocking_ones(world: World) -> None:
    token = world.token()

    async def run() -> tuple[AppAccess, AppAccess, bool]:
        access = await world.verifier.verify_async(token)  # fetches A's keys in a thread
        again = await world.verifier.verify_async(token)  # cached: inline
        checked = await world.verifier.revalidate_async(access)
        return again, checked, await world.verifier.check_entitled_async(access)

    again, checked, entitled = asyncio.run(run())
    assert again.user_id == "user-1" and checked is not None and entitled
    assert world.market.hits == [JWKS_A, SNAPSHOT]

    world.market.serve_snapshot(world.snapshot([BACKEND_B]))
    world.clock.advance(300)

    async def later() -> None:
        with pytest.raises(BackendNotEntitled):
            await world.verifier.revalidate_async(again)
        assert not await world.verifier.check_entitled_async(again)
        with pytest.raises(AppTokenInvalid):
            await world.verifier.verify_async(world.token(app_id="other-app"))

    asyncio.run(later())
    assert world.market.count(SNAPSHOT) == 2


def test_constructor_checks(world: World) -> None:
    public = world.license.public_key()
    with pytest.raises(ValueError, match="app id"):
        AppTokenVerifier("../x", world.keys, marketplace_key=public)
    with pytest.raises(ValueError, match="P-256"):
        AppTokenVerifier(
            APP, world.keys, marketplace_key=ec.generate_private_key(ec.SECP384R1()).public_key()
        )
    with pytest.raises(ValueError, match="positive"):
        AppTokenVerifier(APP, world.keys, marketplace_key=public, revalidate_every=timedelta(0))
    assert BackendKeyCache("https://m.example/").marketplace_url == "https://m.example"
