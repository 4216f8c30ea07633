"""The backends' key cache: 24 h lifetime, rate-limited refetch, kept keys, JWK filter, disk cache.

Over HTTP to the stand-in marketplace (tests/agent/test_marketplace_server.py), whose hit list
counts the fetches; time comes from a FakeClock.
"""

from __future__ import annotations

import json
import logging
import stat
import threading
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from agent.clock import FakeClock
from agent.marketplace import (
    AppTokenInvalid,
    AppTokenVerifier,
    BackendKeyCache,
    UnknownSigningKey,
    key_id,
    public_jwk,
)
from agent.marketplace.jwks import CACHE_FILE_NAME, UnusableJwk, backend_key_from_jwk
from agent.protocol import b64url, jwk_thumbprint
from tests.helpers.fake_marketplace import (
    APP,
    BACKEND_A,
    BACKEND_B,
    FakeMarketplace,
    World,
    jwks_path,
    new_key,
)
from tests.helpers.forgery import claims_of

JWKS_A = jwks_path(BACKEND_A)
DAY = 24 * 3600


def restarted(w: World, url: str | None = None, **kwargs: Any) -> AppTokenVerifier:
    """A new process: a new cache over the same directory, a new verifier."""
    keys = BackendKeyCache(url or w.market.url, clock=w.clock, cache_dir=w.cache_dir, **kwargs)
    return AppTokenVerifier(APP, keys, marketplace_key=w.license.public_key(), clock=w.clock)


# --- lifetime -----------------------------------------------------------------------------------


def test_keys_are_kept_24_hours_then_refetched(world: World) -> None:
    world.verifier.verify(world.token())
    assert world.market.count(JWKS_A) == 1
    world.clock.advance(DAY - 1)
    assert world.verifier.verify(world.token()).backend_id == BACKEND_A
    assert world.market.count(JWKS_A) == 1
    world.clock.advance(1)
    assert world.verifier.verify(world.token()).backend_id == BACKEND_A
    assert world.market.count(JWKS_A) == 2
    # The refetch starts a new 24 h.
    world.clock.advance(DAY - 1)
    world.verifier.verify(world.token())
    assert world.market.count(JWKS_A) == 2


def test_a_clock_that_ran_back_before_the_fetch_refetches(world: World) -> None:
    world.verifier.verify(world.token())
    world.clock.advance(-3600)
    assert world.keys.cached_key(BACKEND_A, key_id(world.key_a)) is None
    assert world.verifier.verify(world.token()).backend_id == BACKEND_A
    assert world.market.count(JWKS_A) == 2


# --- unknown kid --------------------------------------------------------------------------------


def test_an_unknown_kid_refetches_at_most_once_a_minute_per_backend(world: World) -> None:
    world.verifier.verify(world.token())
    assert world.market.count(JWKS_A) == 1
    rotated = new_key()  # A's next key, not registered yet
    with pytest.raises(UnknownSigningKey):
        world.verifier.verify(world.token(rotated))  # within a minute of the first fetch
    assert world.market.count(JWKS_A) == 1
    world.clock.advance(60)
    with pytest.raises(UnknownSigningKey):
        world.verifier.verify(world.token(rotated))
    assert world.market.count(JWKS_A) == 2
    for _ in range(5):
        world.clock.advance(11)  # 55 s in all: refused at once, no request
        with pytest.raises(UnknownSigningKey):
            world.verifier.verify(world.token(rotated))
    assert world.market.count(JWKS_A) == 2
    # Another backend has its own budget.
    world.verifier.verify(world.token(world.key_b, backend_id=BACKEND_B))
    assert world.market.count(jwks_path(BACKEND_B)) == 1

    # A registers the new key (the old one stays published for a while).
    world.market.serve_jwks(BACKEND_A, world.key_a, rotated)
    world.clock.advance(4)  # 59 s
    with pytest.raises(UnknownSigningKey):
        world.verifier.verify(world.token(rotated))
    assert world.market.count(JWKS_A) == 2
    world.clock.advance(1)  # 60 s
    assert world.verifier.verify(world.token(rotated)).kid == key_id(rotated)
    assert world.market.count(JWKS_A) == 3
    assert world.keys.kids(BACKEND_A) == {key_id(world.key_a), key_id(rotated)}
    # Known kids never fetch.
    for key in (world.key_a, rotated):
        world.verifier.verify(world.token(key))
    assert world.market.count(JWKS_A) == 3


def test_a_successful_fetch_drops_the_keys_it_no_longer_lists(world: World) -> None:
    world.verifier.verify(world.token())
    retired, current = world.key_a, new_key()
    world.market.serve_jwks(BACKEND_A, current)
    world.clock.advance(60)
    assert world.verifier.verify(world.token(current)).kid == key_id(current)
    assert world.keys.kids(BACKEND_A) == {key_id(current)}
    with pytest.raises(UnknownSigningKey):
        world.verifier.verify(world.token(retired))


def test_made_up_issuers_cannot_make_the_app_hammer_the_marketplace(
    market: FakeMarketplace, tmp_path: Path
) -> None:
    clock = FakeClock()
    with BackendKeyCache(market.url, clock=clock, new_backend_fetches_per_minute=3) as keys:
        for i in range(10):
            with pytest.raises(UnknownSigningKey):
                keys.key(f"made-up-{i}", "kid")
        assert market.total() == 3
        clock.advance(60)
        with pytest.raises(UnknownSigningKey):
            keys.key("made-up-10", "kid")
        assert market.total() == 4


@pytest.mark.parametrize(
    "backend_id", ["../apps/chat-app", "a/b", "a?b", "", ".hidden", "a%2Fb", "x" * 129]
)
def test_a_backend_id_that_could_change_the_url_is_refused_unfetched(
    world: World, backend_id: str
) -> None:
    with pytest.raises(AppTokenInvalid, match="not a valid backend id"):
        world.keys.key(backend_id, "kid")
    assert world.market.hits == []


# --- failures keep the keys ---------------------------------------------------------------------


def _private_only(w: World) -> None:
    jwk = {**public_jwk(w.key_a), "d": b64url(b"\x01" * 32)}
    w.market.serve(JWKS_A, {"keys": [jwk]})


JWKS_FAILURES: dict[str, Callable[[World], None]] = {
    "http-500": lambda w: w.market.serve(JWKS_A, b"oops", status=500),
    "http-404": lambda w: w.market.serve(JWKS_A, {"code": "not_found"}, status=404),
    "not-json": lambda w: w.market.serve(JWKS_A, b"<html>bad gateway</html>"),
    "json-not-a-jwks": lambda w: w.market.serve(JWKS_A, [1, 2, 3]),
    "keys-not-a-list": lambda w: w.market.serve(JWKS_A, {"keys": "none"}),
    "no-keys": lambda w: w.market.serve(JWKS_A, {"keys": []}),
    "only-a-private-jwk": _private_only,
    "only-another-curve": lambda w: w.market.serve(
        JWKS_A, {"keys": [public_jwk_any(ec.generate_private_key(ec.SECP384R1()))]}
    ),
    "too-large": lambda w: w.market.serve(JWKS_A, {"keys": [], "pad": "x" * 70_000}),
    "server-stopped": lambda w: w.market.stop(),
}


def public_jwk_any(key: ec.EllipticCurvePrivateKey) -> dict[str, Any]:
    """A public JWK of any EC curve, with its thumbprint as kid (public_jwk takes P-256 only)."""
    size = (key.curve.key_size + 7) // 8
    numbers = key.public_key().public_numbers()
    crv = {"secp384r1": "P-384", "secp521r1": "P-521", "secp256r1": "P-256"}[key.curve.name]
    jwk = {
        "kty": "EC",
        "crv": crv,
        "x": b64url(numbers.x.to_bytes(size, "big")),
        "y": b64url(numbers.y.to_bytes(size, "big")),
    }
    return {**jwk, "kid": jwk_thumbprint(jwk)}


@pytest.mark.parametrize("failure", sorted(JWKS_FAILURES))
def test_a_failed_refetch_keeps_the_known_keys(world: World, failure: str) -> None:
    access = world.verifier.verify(world.token())
    cache_file = world.cache_dir / CACHE_FILE_NAME
    cached = cache_file.read_bytes()
    JWKS_FAILURES[failure](world)
    reachable = not world.market.stopped

    world.clock.advance(DAY)  # stale: a refetch is due, and fails
    assert world.verifier.verify(world.token()).kid == access.kid
    assert world.market.count(JWKS_A) == 1 + reachable
    # An unknown kid is still refused (and waits its minute); the known key still verifies.
    with pytest.raises(UnknownSigningKey):
        world.verifier.verify(world.token(new_key()))
    world.clock.advance(30)
    assert world.verifier.verify(world.token()).kid == access.kid
    assert world.market.count(JWKS_A) == 1 + reachable  # the failed attempt counts: no retry yet
    world.clock.advance(30)
    assert world.verifier.verify(world.token()).kid == access.kid  # retried, failed, kept
    assert world.market.count(JWKS_A) == 1 + 2 * reachable
    assert world.keys.kids(BACKEND_A) == {access.kid}
    assert cache_file.read_bytes() == cached
    # And a restart from the disk cache, with the marketplace in the same state, still works.
    assert restarted(world).verify(world.token()).kid == access.kid


def test_a_failed_first_fetch_refuses_and_waits_a_minute(
    market: FakeMarketplace, tmp_path: Path
) -> None:
    market.serve(JWKS_A, b"", status=503)
    clock = FakeClock()
    key = new_key()
    with BackendKeyCache(market.url, clock=clock) as keys:
        for _ in range(3):
            with pytest.raises(UnknownSigningKey):
                keys.key(BACKEND_A, key_id(key))
        assert market.count(JWKS_A) == 1
        market.serve_jwks(BACKEND_A, key)
        clock.advance(60)
        assert keys.key(BACKEND_A, key_id(key)).backend_id == BACKEND_A
        assert market.count(JWKS_A) == 2


# --- which JWKs are used ------------------------------------------------------------------------


def _with(key: ec.EllipticCurvePrivateKey, **changes: Any) -> dict[str, Any]:
    jwk: dict[str, Any] = {**public_jwk(key)}
    for name, value in changes.items():
        if value is None:
            jwk.pop(name)
        else:
            jwk[name] = value
    return jwk


BAD_JWKS: dict[str, Callable[[ec.EllipticCurvePrivateKey], Any]] = {
    "private-member-d": lambda k: _with(k, d=b64url(b"\x07" * 32)),
    "symmetric-member-k": lambda k: _with(k, k="c2VjcmV0"),
    "no-kid": lambda k: _with(k, kid=None),
    "kid-not-the-thumbprint": lambda k: _with(k, kid="my-key-1"),
    "kid-of-another-key": lambda k: _with(k, kid=key_id(new_key())),
    "rsa": lambda k: {"kty": "RSA", "n": "sXch", "e": "AQAB", "kid": "r"},
    "p-384": lambda k: public_jwk_any(ec.generate_private_key(ec.SECP384R1())),
    "crv-lies": lambda k: _with(k, crv="P-384"),
    "alg-es384": lambda k: _with(k, alg="ES384"),
    "alg-hs256": lambda k: _with(k, alg="HS256"),
    "use-enc": lambda k: _with(k, use="enc"),
    "point-not-on-the-curve": lambda k: _with(k, y=b64url(b"\x01" * 32)),
    "x-not-a-string": lambda k: _with(k, x=12345),
    "not-an-object": lambda k: "EC P-256",
}


@pytest.mark.parametrize("name", sorted(BAD_JWKS))
def test_unusable_jwks_are_ignored_and_the_good_ones_kept(
    world: World, name: str, caplog: pytest.LogCaptureFixture
) -> None:
    bad_key = new_key()
    bad = BAD_JWKS[name](bad_key)
    with pytest.raises(UnusableJwk):
        backend_key_from_jwk(BACKEND_A, bad)
    world.market.serve(JWKS_A, {"keys": [bad, public_jwk(world.key_a)]})
    with caplog.at_level(logging.WARNING, logger="tgflow.agent.marketplace"):
        assert world.verifier.verify(world.token()).backend_id == BACKEND_A
    assert world.keys.kids(BACKEND_A) == {key_id(world.key_a)}
    assert any("ignored" in r.getMessage() for r in caplog.records)
    # A token signed by the key the bad entry stands for is refused.
    with pytest.raises(UnknownSigningKey):
        world.verifier.verify(world.token(bad_key))
    stored = json.loads((world.cache_dir / CACHE_FILE_NAME).read_text())
    assert stored["backends"][BACKEND_A]["keys"] == [public_jwk(world.key_a)]


def test_a_published_private_key_is_neither_used_nor_stored(world: World) -> None:
    leaked = {**public_jwk(world.key_a), "d": b64url(b"\x07" * 32)}
    successor = new_key()
    world.market.serve(JWKS_A, {"keys": [leaked, public_jwk(successor)]})
    with pytest.raises(UnknownSigningKey):
        world.verifier.verify(world.token())
    assert world.keys.kids(BACKEND_A) == {key_id(successor)}
    assert world.verifier.verify(world.token(successor)).kid == key_id(successor)
    assert '"d"' not in (world.cache_dir / CACHE_FILE_NAME).read_text()


# --- the disk cache -----------------------------------------------------------------------------


def test_the_disk_cache_is_private_and_a_restart_needs_no_network(world: World) -> None:
    world.verifier.verify(world.token())
    world.verifier.verify(world.token(world.key_b, backend_id=BACKEND_B))
    cache_file = world.cache_dir / CACHE_FILE_NAME
    assert stat.S_IMODE(cache_file.stat().st_mode) == 0o600
    assert sorted(p.name for p in world.cache_dir.iterdir()) == [CACHE_FILE_NAME]
    stored = json.loads(cache_file.read_text())
    assert set(stored["backends"]) == {BACKEND_A, BACKEND_B}

    world.market.stop()
    world.clock.advance(3600)
    after = restarted(world)
    assert after.keys.kids(BACKEND_A) == {key_id(world.key_a)}
    assert after.verify(world.token()).backend_id == BACKEND_A
    assert after.verify(world.token(world.key_b, backend_id=BACKEND_B)).backend_id == BACKEND_B
    assert world.market.count(JWKS_A) == 1
    # The 24 h count from the original fetch, not from the restart.
    assert after.keys.fetched_at(BACKEND_A) == world.keys.fetched_at(BACKEND_A)


def test_a_restart_refetches_when_the_cached_keys_are_older_than_24_hours(
    world: World,
) -> None:
    world.verifier.verify(world.token())
    world.clock.advance(DAY)
    after = restarted(world)
    assert after.verify(world.token()).backend_id == BACKEND_A
    assert world.market.count(JWKS_A) == 2


def test_the_disk_cache_gets_no_trust_of_its_own(world: World) -> None:
    world.verifier.verify(world.token())
    cache_file = world.cache_dir / CACHE_FILE_NAME
    stored = json.loads(cache_file.read_text())
    intruder = new_key()
    entry = stored["backends"][BACKEND_A]
    entry["keys"].append({**public_jwk(intruder), "d": b64url(b"\x01" * 32)})  # private member
    entry["keys"].append({**public_jwk(intruder), "kid": key_id(world.key_a)})  # stolen kid
    stored["backends"]["../evil"] = {"fetched_at": None, "keys": [public_jwk(intruder)]}
    cache_file.write_text(json.dumps(stored))
    world.market.stop()

    after = restarted(world)
    assert after.keys.kids(BACKEND_A) == {key_id(world.key_a)}
    with pytest.raises(UnknownSigningKey):
        after.verify(world.token(intruder))
    stolen_kid = jwt.encode(
        claims_of(world.token()), intruder, "ES256", headers={"kid": key_id(world.key_a)}
    )
    with pytest.raises(AppTokenInvalid, match="Signature verification"):
        after.verify(stolen_kid)


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        json.dumps({"version": 99, "backends": {}}),
        json.dumps([1, 2]),
    ],
)
def test_a_corrupt_disk_cache_is_ignored(world: World, content: str) -> None:
    (world.cache_dir).mkdir(parents=True, exist_ok=True)
    (world.cache_dir / CACHE_FILE_NAME).write_text(content)
    after = restarted(world)
    assert after.keys.kids(BACKEND_A) == frozenset()
    assert after.verify(world.token()).backend_id == BACKEND_A  # fetched, and the file rewritten
    assert BACKEND_A in json.loads((world.cache_dir / CACHE_FILE_NAME).read_text())["backends"]


def test_a_disk_cache_of_another_marketplace_is_ignored(world: World) -> None:
    world.verifier.verify(world.token())
    other = restarted(world, url="http://127.0.0.1:9/")
    assert other.keys.kids(BACKEND_A) == frozenset()


def test_without_a_cache_dir_nothing_is_written(market: FakeMarketplace, tmp_path: Path) -> None:
    key = new_key()
    market.serve_jwks(BACKEND_A, key)
    with BackendKeyCache(market.url, clock=FakeClock()) as keys:
        assert keys.cache_path is None
        assert keys.key(BACKEND_A, key_id(key)).kid == key_id(key)
    assert list(tmp_path.iterdir()) == []


# --- threads ------------------------------------------------------------------------------------


def test_concurrent_first_verifications_share_one_fetch(world: World) -> None:
    gate = threading.Event()
    world.market.gates[JWKS_A] = gate
    token = world.token()
    start = threading.Barrier(16)
    results: list[str] = []
    errors: list[BaseException] = []

    def verify() -> None:
        start.wait(10)
        try:
            results.append(world.verifier.verify(token).backend_id)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=verify) for _ in range(16)]
    for thread in threads:
        thread.start()
    assert world.market.arrived.wait(10)
    gate.set()
    for thread in threads:
        thread.join(10)
    assert errors == []
    assert results == [BACKEND_A] * 16
    assert world.market.count(JWKS_A) == 1


def test_refresh_fetches_now_and_reports_the_outcome(world: World) -> None:
    assert world.keys.refresh(BACKEND_A)
    assert world.keys.refresh(BACKEND_A)
    assert world.market.count(JWKS_A) == 2
    world.market.serve(JWKS_A, b"", status=500)
    assert not world.keys.refresh(BACKEND_A)
    assert world.keys.kids(BACKEND_A) == {key_id(world.key_a)}


def test_constructor_checks(market: FakeMarketplace) -> None:
    with pytest.raises(ValueError, match="ttl"):
        BackendKeyCache(market.url, ttl=timedelta(0))
    with pytest.raises(ValueError, match="new_backend_fetches_per_minute"):
        BackendKeyCache(market.url, new_backend_fetches_per_minute=0)
