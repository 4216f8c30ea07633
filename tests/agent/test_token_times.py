"""Time and issuer checks of the verifier: the injected clock decides, with 30 s of leeway."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from agent.clock import FakeClock
from agent.errors import TokenExpired, TokenInvalid
from agent.key_pins import PinnedKeySet
from agent.protocol import MAX_LEEWAY_SECONDS
from agent.tokens import DEFAULT_LEEWAY_SECONDS, TokenVerifier, device_claim
from tests.helpers.agent_backend import AgentBackend


def verifier_for(
    backend: AgentBackend, tmp_path: Path, clock: FakeClock, **kwargs: object
) -> TokenVerifier:
    pins = f"{backend.signing_key('auth').pin},{backend.signing_key('license').pin}"
    keys = PinnedKeySet(backend.url, pins, tmp_path, clock=clock)
    assert keys.refresh_sync()
    return TokenVerifier(keys, clock=clock, **kwargs)  # type: ignore[arg-type]


def test_leeway_is_30_seconds_on_each_side(backend: AgentBackend, tmp_path: Path) -> None:
    assert DEFAULT_LEEWAY_SECONDS == 30 <= MAX_LEEWAY_SECONDS
    session = backend.session()
    clock = FakeClock()
    verifier = verifier_for(backend, tmp_path, clock)
    issued = backend.clock.now()
    clock.set(issued)
    claims = verifier.verify_access_token(session.token)
    assert claims.issued_at == issued.replace(microsecond=0)
    expires = claims.expires_at

    clock.set(expires + timedelta(seconds=30))
    verifier.verify_access_token(session.token)
    clock.set(expires + timedelta(seconds=31))
    with pytest.raises(TokenExpired):
        verifier.verify_access_token(session.token)

    # nbf (= iat) lies at the issue time: a clock 30 s behind passes, 31 s does not.
    clock.set(issued - timedelta(seconds=30))
    verifier.verify_access_token(session.token)
    clock.set(issued - timedelta(seconds=31))
    with pytest.raises(TokenInvalid, match="not valid before"):
        verifier.verify_access_token(session.token)


def test_a_lease_serves_offline_until_it_expires(backend: AgentBackend, tmp_path: Path) -> None:
    session = backend.session()
    clock = FakeClock(backend.clock.now())
    verifier = verifier_for(backend, tmp_path, clock)
    assert device_claim(session.fingerprint) == session.device  # what GET /license reports
    lease = verifier.verify_lease(session.lease, device=device_claim(session.fingerprint))
    assert lease.expires_at - lease.issued_at == timedelta(
        seconds=backend.services.ctx.settings.lease_ttl_seconds
    )
    clock.set(lease.expires_at - timedelta(hours=1))
    assert verifier.verify_lease(session.lease, device=session.device).subject == session.user_id
    clock.set(lease.expires_at + timedelta(seconds=31))
    with pytest.raises(TokenExpired, match="license lease expired"):
        verifier.verify_lease(session.lease, device=session.device)


def test_zero_leeway_is_strict_and_more_than_60_seconds_is_refused(
    backend: AgentBackend, tmp_path: Path
) -> None:
    session = backend.session()
    clock = FakeClock(backend.clock.now())
    strict = verifier_for(backend, tmp_path, clock, leeway_seconds=0)
    expires = strict.verify_access_token(session.token).expires_at
    clock.set(expires + timedelta(seconds=1))
    with pytest.raises(TokenExpired):
        strict.verify_access_token(session.token)
    keys = strict.keys
    assert TokenVerifier(keys, leeway_seconds=MAX_LEEWAY_SECONDS).leeway_seconds == 60
    for bad in (MAX_LEEWAY_SECONDS + 1, -1):
        with pytest.raises(ValueError, match="leeway"):
            TokenVerifier(keys, leeway_seconds=bad)


def test_the_issuer_is_configurable(backend: AgentBackend, tmp_path: Path) -> None:
    session = backend.session()
    clock = FakeClock(backend.clock.now())
    assert verifier_for(backend, tmp_path, clock).issuer == "tgflow"
    other = verifier_for(backend, tmp_path, clock, issuer="tgflow-staging")
    with pytest.raises(TokenInvalid, match="issuer"):
        other.verify_access_token(session.token)
    with pytest.raises(TokenInvalid, match="issuer"):
        other.verify_lease(session.lease, device=session.device)
