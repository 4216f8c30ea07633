"""The pinned JWKS cache against a real server: pin filter, disk cache, rate-limited refetch."""

from __future__ import annotations

import asyncio
import json
import logging
import stat
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from agent.clock import FakeClock
from agent.errors import UnpinnedKey, UntrustedKey
from agent.key_pins import CACHE_FILE_NAME, PinnedKeySet
from agent.protocol import jwk_thumbprint, public_key_pin
from agent.tokens import TokenVerifier
from server_stub.keys import public_jwk
from tests.helpers.agent_backend import AgentBackend, RequestCounter, closed_port_url

JWKS = "/.well-known/jwks.json"


def both_pins(backend: AgentBackend) -> str:
    return f"{backend.signing_key('auth').pin},{backend.signing_key('license').pin}"


def agent_clock(backend: AgentBackend) -> FakeClock:
    return FakeClock(backend.clock.now())


def test_only_pinned_entries_are_kept_and_the_rest_is_logged(
    backend: AgentBackend, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    auth, lic = backend.signing_key("auth"), backend.signing_key("license")
    published = {k["kid"] for k in backend.client.get(JWKS).json()["keys"]}
    assert published == {auth.kid, lic.kid}

    keys = PinnedKeySet(backend.url, lic.pin, tmp_path, clock=agent_clock(backend))
    with caplog.at_level(logging.WARNING, logger="tgflow.agent.keys"):
        assert keys.refresh_sync()
    assert keys.kids() == {lic.kid}
    assert keys.key(lic.kid).alg == "ES256"
    unpinned = [r.getMessage() for r in caplog.records if "not pinned" in r.getMessage()]
    assert len(unpinned) == 1 and auth.kid in unpinned[0] and auth.pin in unpinned[0]
    # Published but not pinned: said as such, with the pin it would need.
    with pytest.raises(UnpinnedKey, match=auth.kid) as unpinned_error:
        keys.key(auth.kid)
    assert (unpinned_error.value.pin, unpinned_error.value.alg) == (auth.pin, "RS256")
    with pytest.raises(UntrustedKey) as unknown:
        keys.key("not-a-published-kid")
    assert not isinstance(unknown.value, UnpinnedKey)
    session = backend.session()
    with pytest.raises(UntrustedKey):
        TokenVerifier(keys, clock=agent_clock(backend)).verify_access_token(session.token)


def test_the_disk_cache_is_private_and_survives_a_restart(
    backend: AgentBackend,
    tmp_path: Path,
    counting_client: tuple[httpx.Client, RequestCounter],
) -> None:
    client, counter = counting_client
    cache_dir = tmp_path / "agent"
    first = PinnedKeySet(backend.url, both_pins(backend), cache_dir, clock=agent_clock(backend))
    assert first.kids() == frozenset()  # nothing cached yet
    assert first.refresh_sync(client)
    assert counter.count(JWKS) == 1

    cache = cache_dir / CACHE_FILE_NAME
    assert stat.S_IMODE(cache.stat().st_mode) == 0o600
    assert sorted(p.name for p in cache_dir.iterdir()) == [CACHE_FILE_NAME]  # no temp file left
    stored = json.loads(cache.read_text())
    assert {k["kid"] for k in stored["jwks"]["keys"]} == first.kids()

    # A restart with the server gone: the keys come from disk and tokens verify offline.
    session = backend.session()
    backend.stop()
    clock = agent_clock(backend)
    second = PinnedKeySet(closed_port_url(), both_pins(backend), cache_dir, clock=clock)
    assert second.kids() == first.kids()
    verifier = TokenVerifier(second, clock=clock)
    assert verifier.verify_access_token(session.token, client=client).subject == session.user_id
    assert verifier.verify_lease(session.lease, device=session.device).device == session.device
    assert counter.count(JWKS) == 1  # a known kid never fetches


def test_the_disk_cache_is_filtered_by_the_pins_like_a_fetch(
    backend: AgentBackend, tmp_path: Path
) -> None:
    auth, lic = backend.signing_key("auth"), backend.signing_key("license")
    first = PinnedKeySet(backend.url, both_pins(backend), tmp_path, clock=agent_clock(backend))
    assert first.refresh_sync()
    # Someone writes their own key into the cache file, and swaps the auth key's modulus.
    cache = tmp_path / CACHE_FILE_NAME
    stored = json.loads(cache.read_text())
    intruder = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    intruder_jwk = public_jwk(intruder)
    intruder_kid = jwk_thumbprint(intruder_jwk)
    stored["jwks"]["keys"].append({**intruder_jwk, "kid": intruder_kid, "alg": "RS256"})
    for entry in stored["jwks"]["keys"]:
        if entry["kid"] == auth.kid:
            entry["n"] = intruder_jwk["n"]
    cache.write_text(json.dumps(stored))

    reloaded = PinnedKeySet(closed_port_url(), both_pins(backend), tmp_path)
    assert reloaded.kids() == {lic.kid}
    assert public_key_pin(intruder) not in reloaded.pins


def test_a_corrupt_disk_cache_is_ignored(
    backend: AgentBackend, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / CACHE_FILE_NAME).write_text("{not json")
    with caplog.at_level(logging.WARNING, logger="tgflow.agent.keys"):
        keys = PinnedKeySet(backend.url, both_pins(backend), tmp_path)
    assert keys.kids() == frozenset()
    assert any("not JSON" in r.getMessage() for r in caplog.records)
    assert keys.refresh_sync()  # and the next fetch replaces it
    assert len(keys.kids()) == 2
    assert json.loads((tmp_path / CACHE_FILE_NAME).read_text())["jwks"]["keys"]


def test_a_failed_fetch_keeps_the_cached_keys(backend: AgentBackend, tmp_path: Path) -> None:
    clock = agent_clock(backend)
    keys = PinnedKeySet(backend.url, both_pins(backend), tmp_path, clock=clock)
    assert keys.refresh_sync()
    known = keys.kids()
    assert len(known) == 2
    session = backend.session()
    cached = (tmp_path / CACHE_FILE_NAME).read_bytes()

    # An answer that is not a JWKS (wrong path: 404) keeps the keys.
    wrong = PinnedKeySet(backend.url + "/nope", both_pins(backend), tmp_path, clock=clock)
    assert wrong.kids() == known
    assert not wrong.refresh_sync()
    assert wrong.kids() == known

    # The server goes away: the fetch fails, sync and async, and nothing changes.
    backend.stop()
    assert not keys.refresh_sync()

    async def refresh_async() -> bool:
        async with httpx.AsyncClient(timeout=5) as client:
            return await keys.refresh(client)

    assert not asyncio.run(refresh_async())
    assert keys.kids() == known
    assert (tmp_path / CACHE_FILE_NAME).read_bytes() == cached
    verifier = TokenVerifier(keys, clock=clock)
    assert verifier.verify_access_token(session.token).subject == session.user_id


def test_a_jwks_without_any_pinned_key_keeps_the_cached_keys(
    backend: AgentBackend, tmp_path: Path
) -> None:
    old = backend.signing_key("auth")
    keys = PinnedKeySet(backend.url, old.pin, tmp_path, clock=agent_clock(backend))
    assert keys.refresh_sync()
    assert keys.kids() == {old.kid}
    # Rotate, and let the old key's last token expire so the server stops publishing it.
    backend.services.ctx.keys.rotate("auth")
    backend.clock.advance(backend.services.ctx.settings.lease_ttl_seconds + 1)
    published = {k["kid"] for k in backend.client.get(JWKS).json()["keys"]}
    assert old.kid not in published

    assert not keys.refresh_sync()
    assert keys.kids() == {old.kid}


def test_an_unknown_kid_refetches_at_most_once_a_minute(
    backend: AgentBackend,
    tmp_path: Path,
    counting_client: tuple[httpx.Client, RequestCounter],
) -> None:
    client, counter = counting_client
    clock = agent_clock(backend)
    keys = PinnedKeySet(backend.url, both_pins(backend), tmp_path, clock=clock)

    with pytest.raises(UntrustedKey):
        keys.resolve_sync("unknown-1", client)
    assert counter.count(JWKS) == 1
    assert len(keys.kids()) == 2  # that fetch did load the pinned keys
    with pytest.raises(UntrustedKey):
        keys.resolve_sync("unknown-2", client)
    clock.advance(59)
    with pytest.raises(UntrustedKey):
        keys.resolve_sync("unknown-3", client)
    assert counter.count(JWKS) == 1
    clock.advance(1)
    with pytest.raises(UntrustedKey):
        keys.resolve_sync("unknown-4", client)
    assert counter.count(JWKS) == 2
    # A known kid never fetches, whatever the time.
    clock.advance(3600)
    known = next(iter(keys.kids()))
    assert keys.resolve_sync(known, client).kid == known
    assert counter.count(JWKS) == 2

    # The async path shares the same budget.
    async_counter = RequestCounter()

    async def resolve_twice() -> None:
        async with httpx.AsyncClient(
            timeout=10, event_hooks={"request": [async_counter.hook]}
        ) as aclient:
            for kid in ("unknown-5", "unknown-6"):
                with pytest.raises(UntrustedKey):
                    await keys.resolve(kid, aclient)

    clock.advance(60)
    asyncio.run(resolve_twice())
    assert async_counter.count(JWKS) == 1


def test_a_failed_refetch_also_waits_a_minute(
    tmp_path: Path, counting_client: tuple[httpx.Client, RequestCounter]
) -> None:
    client, counter = counting_client
    clock = FakeClock()
    keys = PinnedKeySet(closed_port_url(), "sha256/" + "A" * 43, tmp_path, clock=clock)
    for _ in range(3):
        with pytest.raises(UntrustedKey):
            keys.resolve_sync("some-kid", client)
    assert counter.count(JWKS) == 1
    clock.advance(60)
    with pytest.raises(UntrustedKey):
        keys.resolve_sync("some-kid", client)
    assert counter.count(JWKS) == 2


def test_an_unknown_kid_picks_up_a_rotated_key(
    backend: AgentBackend,
    tmp_path: Path,
    counting_client: tuple[httpx.Client, RequestCounter],
) -> None:
    client, counter = counting_client
    old, lic = backend.signing_key("auth"), backend.signing_key("license")
    yesterday = PinnedKeySet(backend.url, f"{old.pin},{lic.pin}", tmp_path)
    assert yesterday.refresh_sync()
    new = backend.services.ctx.keys.rotate("auth")
    session = backend.session()  # signed with the new key

    # Today's agent ships the next key's pin and starts from yesterday's cache.
    clock = agent_clock(backend)
    keys = PinnedKeySet(backend.url, f"{old.pin},{new.pin},{lic.pin}", tmp_path, clock=clock)
    assert keys.kids() == {old.kid, lic.kid}
    verifier = TokenVerifier(keys, clock=clock)
    with pytest.raises(UntrustedKey):
        verifier.verify_access_token(session.token)  # offline: only what is known
    assert counter.count(JWKS) == 0

    claims = verifier.verify_access_token(session.token, client=client)
    assert claims.kid == new.kid
    assert counter.count(JWKS) == 1
    assert keys.kids() == {old.kid, new.kid, lic.kid}
    stored = json.loads((tmp_path / CACHE_FILE_NAME).read_text())
    assert new.kid in {k["kid"] for k in stored["jwks"]["keys"]}
