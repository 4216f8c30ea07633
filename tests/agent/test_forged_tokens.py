"""The forged-token corpus: every kind is refused by the agent's verifier, a genuine token passes.

Genuine tokens come from a real backend over HTTP (register, then ``GET /license``); forgeries are
made with the server's own private keys where a real attacker would need them (to show that the
claim checks, not only the signature, refuse them), and with an attacker's key otherwise. Each
forgery is checked on three paths: offline (cached keys only), with a blocking client that may
refetch the JWKS, and with an ``httpx.AsyncClient``.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from agent.clock import FakeClock
from agent.errors import (
    DeviceMismatch,
    TokenExpired,
    TokenInvalid,
    TokenRejected,
    UnpinnedKey,
    UntrustedKey,
)
from agent.key_pins import PinnedKeySet
from agent.protocol import jwk_thumbprint
from agent.tokens import TokenVerifier
from server_stub.keys import SigningKey, public_jwk
from tests.helpers.agent_backend import (
    AgentBackend,
    HitRecorder,
    RequestCounter,
    Session,
    running_backend,
)
from tests.helpers.forgery import (
    b64json,
    b64url,
    claims_of,
    compose,
    header_of,
    hs256,
    rs256,
    sign,
    unsigned,
)

PATHS = ("offline", "refetch", "async")


@dataclass
class World:
    backend: AgentBackend
    auth: SigningKey
    license: SigningKey
    alice: Session
    bob: Session
    clock: FakeClock
    verifier: TokenVerifier
    license_only: TokenVerifier
    attacker: rsa.RSAPrivateKey

    def now(self) -> int:
        return int(self.clock.now().timestamp())


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    base = tmp_path_factory.mktemp("forged")
    with running_backend(base / "server") as backend:
        auth, lic = backend.signing_key("auth"), backend.signing_key("license")
        clock = FakeClock(backend.clock.now())
        keys = PinnedKeySet(backend.url, f"{auth.pin},{lic.pin}", base / "agent", clock=clock)
        assert keys.refresh_sync()
        license_keys = PinnedKeySet(backend.url, lic.pin, base / "agent-license-only", clock=clock)
        assert license_keys.refresh_sync()
        yield World(
            backend=backend,
            auth=auth,
            license=lic,
            alice=backend.session(),
            bob=backend.session(),
            clock=clock,
            verifier=TokenVerifier(keys, clock=clock),
            license_only=TokenVerifier(license_keys, clock=clock),
            attacker=rsa.generate_private_key(public_exponent=65537, key_size=2048),
        )


@dataclass(frozen=True)
class Forgery:
    token: str
    expected: type[TokenRejected]
    match: str
    kind: str = "access"  # or "lease"
    verifier: str = "main"  # or "license_only"
    device: str | None = None  # default: Alice's device for a lease, none for an access token


FORGERIES: dict[str, Callable[[World], Forgery]] = {}


def forgery(name: str) -> Callable[[Callable[[World], Forgery]], Callable[[World], Forgery]]:
    def register(build: Callable[[World], Forgery]) -> Callable[[World], Forgery]:
        FORGERIES[name] = build
        return build

    return register


def verify(world: World, kind: str, token: str, path: str, **kwargs: Any) -> Any:
    """Verify on one of the three paths; ``kwargs`` go to the verifier (device, verifier)."""
    verifier: TokenVerifier = getattr(world, kwargs.pop("verifier", "verifier"))
    device = kwargs.pop("device", None)
    if kind == "lease":
        device = device or world.alice.device
    if path == "offline":
        if kind == "lease":
            return verifier.verify_lease(token, device=device)
        return verifier.verify_access_token(token, device=device)
    if path == "refetch":
        with httpx.Client(timeout=10) as client:
            if kind == "lease":
                return verifier.verify_lease(token, device=device, client=client)
            return verifier.verify_access_token(token, device=device, client=client)

    async def run() -> Any:
        async with httpx.AsyncClient(timeout=10) as client:
            if kind == "lease":
                return await verifier.verify_lease_async(token, client, device=device)
            return await verifier.verify_access_token_async(token, client, device=device)

    return asyncio.run(run())


def resigned(world: World, token: str, **changes: Any) -> str:
    """``token``'s claims with ``changes`` (``None`` deletes), re-signed with the genuine key."""
    claims = claims_of(token)
    for name, value in changes.items():
        if value is None:
            claims.pop(name, None)
        else:
            claims[name] = value
    return sign(claims, world.auth.private_key, "RS256", kid=world.auth.kid)


# --- the corpus ---------------------------------------------------------------------------------


@forgery("alg-none")
def _alg_none(w: World) -> Forgery:
    token = compose(
        {"alg": "none", "typ": "JWT", "kid": w.auth.kid}, claims_of(w.alice.token), unsigned
    )
    return Forgery(token, TokenInvalid, "not 'none'")


@forgery("alg-none-uppercase")
def _alg_none_upper(w: World) -> Forgery:
    token = compose({"alg": "NONE", "kid": w.auth.kid}, claims_of(w.alice.token), unsigned)
    return Forgery(token, TokenInvalid, "not 'NONE'")


@forgery("lease-alg-none")
def _lease_alg_none(w: World) -> Forgery:
    token = compose({"alg": "none", "kid": w.auth.kid}, claims_of(w.alice.lease), unsigned)
    return Forgery(token, TokenInvalid, "not 'none'", kind="lease")


@forgery("hs256-signed-with-public-key-pem")
def _hs256_pem(w: World) -> Forgery:
    pem = w.auth.public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = {"alg": "HS256", "typ": "JWT", "kid": w.auth.kid}
    return Forgery(compose(header, claims_of(w.alice.token), hs256(pem)), TokenInvalid, "HS256")


@forgery("lease-hs256-signed-with-public-key-pem")
def _lease_hs256_pem(w: World) -> Forgery:
    pem = w.auth.public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = {"alg": "HS256", "typ": "JWT", "kid": w.auth.kid}
    token = compose(header, claims_of(w.alice.lease), hs256(pem))
    return Forgery(token, TokenInvalid, "HS256", kind="lease")


@forgery("published-but-unpinned-key")
def _unpinned(w: World) -> Forgery:
    # The server publishes the auth key; this verifier pins only the license key.
    # Refused as the subclass that says which pin is missing.
    return Forgery(w.alice.token, UnpinnedKey, re.escape(w.auth.kid), verifier="license_only")


@forgery("lease-published-but-unpinned-key")
def _lease_unpinned(w: World) -> Forgery:
    return Forgery(
        w.alice.lease, UnpinnedKey, re.escape(w.auth.kid), kind="lease", verifier="license_only"
    )


@forgery("unknown-kid-attacker-key")
def _attacker_key(w: World) -> Forgery:
    kid = jwk_thumbprint(public_jwk(w.attacker.public_key()))
    token = sign(claims_of(w.alice.token), w.attacker, "RS256", kid=kid)
    return Forgery(token, UntrustedKey, re.escape(kid))


@forgery("unknown-kid-genuine-signature")
def _unknown_kid(w: World) -> Forgery:
    token = sign(claims_of(w.alice.token), w.auth.private_key, "RS256", kid="no-such-kid")
    return Forgery(token, UntrustedKey, "no-such-kid")


@forgery("attacker-key-claiming-genuine-kid")
def _attacker_genuine_kid(w: World) -> Forgery:
    token = sign(claims_of(w.alice.token), w.attacker, "RS256", kid=w.auth.kid)
    return Forgery(token, TokenInvalid, "Signature verification failed")


@forgery("no-kid")
def _no_kid(w: World) -> Forgery:
    token = sign(claims_of(w.alice.token), w.auth.private_key, "RS256")
    return Forgery(token, TokenInvalid, "names no signing key")


@forgery("expired")
def _expired(w: World) -> Forgery:
    now = w.now()
    token = resigned(w, w.alice.token, iat=now - 1000, nbf=now - 1000, exp=now - 120)
    return Forgery(token, TokenExpired, "expired")


@forgery("lease-expired")
def _lease_expired(w: World) -> Forgery:
    now = w.now()
    token = resigned(w, w.alice.lease, iat=now - 9000, nbf=now - 9000, exp=now - 31)
    return Forgery(token, TokenExpired, "expired", kind="lease")


@forgery("nbf-in-the-future")
def _nbf_future(w: World) -> Forgery:
    token = resigned(w, w.alice.token, nbf=w.now() + 300, exp=w.now() + 1200)
    return Forgery(token, TokenInvalid, "not valid before")


@forgery("lease-nbf-in-the-future")
def _lease_nbf_future(w: World) -> Forgery:
    token = resigned(w, w.alice.lease, nbf=w.now() + 31)
    return Forgery(token, TokenInvalid, "not valid before", kind="lease")


@forgery("iat-far-in-the-future")
def _iat_future(w: World) -> Forgery:
    token = resigned(w, w.alice.token, iat=w.now() + 86_400)
    return Forgery(token, TokenInvalid, "issued in the future")


@forgery("lease-iat-far-in-the-future")
def _lease_iat_future(w: World) -> Forgery:
    token = resigned(w, w.alice.lease, iat=w.now() + 86_400)
    return Forgery(token, TokenInvalid, "issued in the future", kind="lease")


@forgery("tampered-payload")
def _tampered_payload(w: World) -> Forgery:
    header, _, signature = w.alice.token.split(".")
    claims = {**claims_of(w.alice.token), "sub": w.bob.user_id}
    return Forgery(
        f"{header}.{b64json(claims)}.{signature}", TokenInvalid, "Signature verification"
    )


@forgery("lease-tampered-quota")
def _tampered_lease(w: World) -> Forgery:
    header, _, signature = w.alice.lease.split(".")
    claims = claims_of(w.alice.lease)
    claims["quota"] = {**claims["quota"], "limit": 10**9}
    token = f"{header}.{b64json(claims)}.{signature}"
    return Forgery(token, TokenInvalid, "Signature verification", kind="lease")


@forgery("tampered-signature")
def _tampered_signature(w: World) -> Forgery:
    header, payload, signature = w.alice.token.split(".")
    middle = len(signature) // 2
    flipped = "A" if signature[middle] != "A" else "B"
    token = f"{header}.{payload}.{signature[:middle]}{flipped}{signature[middle + 1 :]}"
    return Forgery(token, TokenInvalid, "Signature verification")


@forgery("tampered-header-kid-swap")
def _tampered_header(w: World) -> Forgery:
    # Same payload and signature, header rewritten to name another (unknown) key.
    _, payload, signature = w.alice.token.split(".")
    header = {**header_of(w.alice.token), "kid": "swapped"}
    return Forgery(f"{b64json(header)}.{payload}.{signature}", UntrustedKey, "swapped")


@forgery("wrong-iss")
def _wrong_iss(w: World) -> Forgery:
    return Forgery(resigned(w, w.alice.token, iss="tgflow-evil"), TokenInvalid, "issuer")


@forgery("missing-iss")
def _missing_iss(w: World) -> Forgery:
    return Forgery(resigned(w, w.alice.token, iss=None), TokenInvalid, '"iss"')


@forgery("lease-wrong-iss")
def _lease_wrong_iss(w: World) -> Forgery:
    return Forgery(resigned(w, w.alice.lease, iss="evil"), TokenInvalid, "issuer", kind="lease")


@forgery("lease-presented-as-access-token")
def _lease_as_access(w: World) -> Forgery:
    return Forgery(w.alice.lease, TokenInvalid, "invalid")


@forgery("lease-with-access-claims-presented-as-access-token")
def _lease_as_access_complete(w: World) -> Forgery:
    # Even with every access-token claim present, the audience alone refuses it.
    return Forgery(resigned(w, w.alice.lease, jti="0" * 32), TokenInvalid, "(?i)audience")


@forgery("access-token-presented-as-lease")
def _access_as_lease(w: World) -> Forgery:
    # Even with every lease claim present, the audience alone refuses it.
    lease = claims_of(w.alice.lease)
    extra = {k: lease[k] for k in ("status", "plan", "quota", "features")}
    token = resigned(w, w.alice.token, **extra)
    return Forgery(token, TokenInvalid, "(?i)audience", kind="lease")


@forgery("raw-access-token-presented-as-lease")
def _raw_access_as_lease(w: World) -> Forgery:
    return Forgery(w.alice.token, TokenInvalid, "invalid", kind="lease")


@forgery("audience-list-with-both")
def _aud_list(w: World) -> Forgery:
    token = resigned(w, w.alice.token, aud=["tgflow-api", "tgflow-lease"])
    return Forgery(token, TokenInvalid, "(?i)audience|claim format")


@forgery("lease-for-another-device")
def _other_device_lease(w: World) -> Forgery:
    return Forgery(w.bob.lease, DeviceMismatch, "another device", kind="lease")


@forgery("lease-device-rewritten-and-resigned-by-attacker")
def _lease_device_attacker(w: World) -> Forgery:
    claims = {**claims_of(w.bob.lease), "device": w.alice.device}
    token = sign(claims, w.attacker, "RS256", kid=w.auth.kid)
    return Forgery(token, TokenInvalid, "Signature verification", kind="lease")


@forgery("access-token-for-another-device")
def _other_device_access(w: World) -> Forgery:
    return Forgery(w.bob.token, DeviceMismatch, "another device", device=w.alice.device)


@forgery("license-file-es256-key-for-access-token")
def _license_key(w: World) -> Forgery:
    token = sign(claims_of(w.alice.token), w.license.private_key, "ES256", kid=w.license.kid)
    return Forgery(token, TokenInvalid, "not 'ES256'")


@forgery("license-file-es256-key-for-lease")
def _license_key_lease(w: World) -> Forgery:
    token = sign(claims_of(w.alice.lease), w.license.private_key, "ES256", kid=w.license.kid)
    return Forgery(token, TokenInvalid, "not 'ES256'", kind="lease")


@forgery("rs256-header-naming-the-license-key")
def _rs256_license_kid(w: World) -> Forgery:
    token = sign(claims_of(w.alice.token), w.auth.private_key, "RS256", kid=w.license.kid)
    return Forgery(token, TokenInvalid, "signs ES256")


@forgery("truncated")
def _truncated(w: World) -> Forgery:
    return Forgery(w.alice.token[:-20], TokenInvalid, "Signature verification|malformed")


@forgery("truncated-to-two-segments")
def _two_segments(w: World) -> Forgery:
    return Forgery(w.alice.token.rsplit(".", 1)[0], TokenInvalid, "not a compact JWS")


@forgery("truncated-in-header")
def _truncated_header(w: World) -> Forgery:
    return Forgery(w.alice.token[:15], TokenInvalid, "not a compact JWS")


@forgery("garbage-word")
def _garbage(w: World) -> Forgery:
    return Forgery("garbage", TokenInvalid, "not a compact JWS")


@forgery("garbage-segments")
def _garbage_segments(w: World) -> Forgery:
    return Forgery("a.b.c", TokenInvalid, "malformed")


@forgery("empty")
def _empty(w: World) -> Forgery:
    return Forgery("", TokenInvalid, "empty")


@forgery("oversized")
def _oversized(w: World) -> Forgery:
    return Forgery("e30." + "A" * 40_000 + ".AA", TokenInvalid, "too long")


@forgery("header-not-an-object")
def _header_list(w: World) -> Forgery:
    _, payload, signature = w.alice.token.split(".")
    return Forgery(f"{b64url(b'[1,2]')}.{payload}.{signature}", TokenInvalid, "malformed")


@forgery("missing-jti")
def _missing_jti(w: World) -> Forgery:
    return Forgery(resigned(w, w.alice.token, jti=None), TokenInvalid, '"jti"')


@forgery("missing-exp")
def _missing_exp(w: World) -> Forgery:
    return Forgery(resigned(w, w.alice.token, exp=None), TokenInvalid, '"exp"')


@forgery("lease-missing-device")
def _lease_no_device(w: World) -> Forgery:
    token = resigned(w, w.alice.lease, device=None)
    return Forgery(token, TokenInvalid, '"device"', kind="lease")


@forgery("lease-malformed-quota")
def _lease_bad_quota(w: World) -> Forgery:
    token = resigned(w, w.alice.lease, quota="lots")
    return Forgery(token, TokenInvalid, "quota", kind="lease")


@forgery("string-exp")
def _string_exp(w: World) -> Forgery:
    return Forgery(resigned(w, w.alice.token, exp="never"), TokenInvalid, "exp|time claims")


@forgery("crit-header")
def _crit(w: World) -> Forgery:
    token = sign(
        claims_of(w.alice.token), w.auth.private_key, "RS256", kid=w.auth.kid, crit=["exp"]
    )
    return Forgery(token, TokenInvalid, "(?i)critical|header extensions")


@forgery("unencoded-payload-b64-false")
def _b64_false(w: World) -> Forgery:
    header = {"alg": "RS256", "kid": w.auth.kid, "b64": False, "crit": ["b64"]}
    token = compose(header, claims_of(w.alice.token), rs256(w.auth.private_key))
    return Forgery(token, TokenInvalid, "malformed|header extensions")


# --- tests --------------------------------------------------------------------------------------


def test_the_corpus_holds_every_kind_the_issue_asks_for() -> None:
    assert len(FORGERIES) >= 12
    for kind in (
        "alg-none",
        "hs256-signed-with-public-key-pem",
        "published-but-unpinned-key",
        "unknown-kid-attacker-key",
        "expired",
        "nbf-in-the-future",
        "iat-far-in-the-future",
        "tampered-payload",
        "wrong-iss",
        "lease-presented-as-access-token",
        "access-token-presented-as-lease",
        "lease-for-another-device",
        "license-file-es256-key-for-access-token",
        "truncated",
        "garbage-segments",
    ):
        assert kind in FORGERIES, kind


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("name", sorted(FORGERIES))
def test_forged_token_is_refused(world: World, name: str, path: str) -> None:
    f = FORGERIES[name](world)
    with pytest.raises(TokenRejected, match=f.match) as refused:
        verify(
            world,
            f.kind,
            f.token,
            path,
            verifier="verifier" if f.verifier == "main" else f.verifier,
            device=f.device,
        )
    assert type(refused.value) is f.expected, refused.value


@pytest.mark.parametrize("path", PATHS)
def test_genuine_tokens_are_accepted(world: World, path: str) -> None:
    access = verify(world, "access", world.alice.token, path, device=world.alice.device)
    assert access.subject == world.alice.user_id
    assert access.device == world.alice.device
    assert access.kid == world.auth.kid
    lease = verify(world, "lease", world.alice.lease, path)
    assert lease.subject == world.alice.user_id
    assert lease.device == world.alice.device
    assert lease.status == "active"
    assert lease.expires_at > world.clock.now()
    # Bob's genuine lease passes for Bob's device: the refusal above is about the device only.
    assert verify(world, "lease", world.bob.lease, path, device=world.bob.device).subject == (
        world.bob.user_id
    )


@pytest.mark.parametrize("kind", ["access", "lease"])
def test_resigning_unchanged_claims_is_accepted(world: World, kind: str) -> None:
    # The forging machinery itself yields valid tokens: each refusal above is the mutation's doing.
    token = world.alice.token if kind == "access" else world.alice.lease
    assert verify(world, kind, resigned(world, token), "offline").subject == world.alice.user_id
    header = {"alg": "RS256", "typ": "JWT", "kid": world.auth.kid}
    composed = compose(header, claims_of(token), rs256(world.auth.private_key))
    assert verify(world, kind, composed, "offline").subject == world.alice.user_id


def test_jku_x5u_and_jwk_headers_are_never_followed(
    world: World, hit_recorder: Callable[[bytes], HitRecorder], tmp_path: Path
) -> None:
    attacker_jwk = {
        **public_jwk(world.attacker.public_key()),
        "kid": jwk_thumbprint(public_jwk(world.attacker.public_key())),
        "alg": "RS256",
        "use": "sig",
    }
    recorder = hit_recorder(b64json({"keys": [attacker_jwk]}).encode())
    # The recorder does record: a direct request shows up, so "no hits" below means something.
    assert httpx.get(f"{recorder.url}/probe", timeout=10).status_code == 200
    assert recorder.hits == ["/probe"]
    recorder.hits.clear()

    injected = {
        "jku": f"{recorder.url}/jwks.json",
        "x5u": f"{recorder.url}/cert.pem",
        "jwk": attacker_jwk,
    }
    own_kid = sign(
        claims_of(world.alice.token), world.attacker, "RS256", kid=attacker_jwk["kid"], **injected
    )
    genuine_kid = sign(
        claims_of(world.alice.token), world.attacker, "RS256", kid=world.auth.kid, **injected
    )
    counter = RequestCounter()
    for path in PATHS:
        with pytest.raises(UntrustedKey):
            verify(world, "access", own_kid, path)
        with pytest.raises(TokenInvalid, match="Signature verification"):
            verify(world, "access", genuine_kid, path)

    # A fresh key set whose first unknown kid may refetch: that one fetch goes where configured.
    clock = FakeClock(world.clock.now())
    pins = f"{world.auth.pin},{world.license.pin}"
    keys = PinnedKeySet(world.backend.url, pins, tmp_path / "agent", clock=clock)
    with (
        httpx.Client(timeout=10, event_hooks={"request": [counter]}) as client,
        pytest.raises(UntrustedKey),
    ):
        TokenVerifier(keys, clock=clock).verify_access_token(own_kid, client=client)
    # The refetch went to the configured server, never to the injected URLs.
    assert counter.urls == [f"{world.backend.url}/.well-known/jwks.json"]
    assert recorder.hits == []


def test_rotated_out_key_is_refused_when_only_the_new_key_is_pinned(tmp_path: Path) -> None:
    with running_backend(tmp_path / "server") as backend:
        old_session = backend.session()
        old = backend.signing_key("auth")
        new = backend.services.ctx.keys.rotate("auth")
        new_session = backend.session()
        published = {k["kid"] for k in backend.client.get("/.well-known/jwks.json").json()["keys"]}
        assert {old.kid, new.kid} <= published  # the old key is still published

        clock = FakeClock(backend.clock.now())
        keys = PinnedKeySet(backend.url, new.pin, tmp_path / "agent", clock=clock)
        assert keys.refresh_sync()
        verifier = TokenVerifier(keys, clock=clock)
        assert verifier.verify_access_token(new_session.token).kid == new.kid
        with pytest.raises(UntrustedKey, match=re.escape(old.kid)):
            verifier.verify_access_token(old_session.token)
        with pytest.raises(UntrustedKey):
            verifier.verify_lease(old_session.lease, device=old_session.device)
