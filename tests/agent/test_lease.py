"""The offline lease in license.json: expiry, device, clock rollback, persistence, bad files."""

from __future__ import annotations

import json
import logging
import os
import stat
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from agent.clock import FakeClock
from agent.errors import (
    DeviceMismatch,
    NoOfflineLease,
    Offline,
    TamperDetected,
    TokenExpired,
)
from agent.key_pins import PinnedKeySet
from agent.lease import LICENSE_FILE_FORMAT, LICENSE_FILE_NAME, LeaseStore
from agent.protocol import CLOCK_ROLLBACK_TOLERANCE_SECONDS
from agent.tokens import TokenVerifier, device_claim
from tests.helpers.agent_backend import AgentBackend, Session
from tests.helpers.api import bearer, fingerprint


@dataclass
class OfflineSetup:
    """A lease fetched online, then everything the offline check needs, the server stopped."""

    session: Session
    license: dict[str, Any]
    clock: FakeClock
    verifier: TokenVerifier
    data_dir: Path
    pins: str
    keys_dir: Path

    def store(self) -> LeaseStore:
        """A new store on the same data dir (a program restart)."""
        return LeaseStore(self.data_dir, clock=self.clock)

    def fresh_verifier(self) -> TokenVerifier:
        """A verifier whose keys come from the on-disk JWKS cache only."""
        return TokenVerifier(
            PinnedKeySet("http://127.0.0.1:9", self.pins, self.keys_dir, clock=self.clock),
            clock=self.clock,
        )


@pytest.fixture
def offline(backend: AgentBackend, tmp_path: Path) -> OfflineSetup:
    session = backend.session()
    r = backend.client.get("/license", headers=bearer(session.token))
    assert r.status_code == 200, r.text
    clock = FakeClock(backend.clock.now())
    pins = f"{backend.signing_key('auth').pin},{backend.signing_key('license').pin}"
    keys_dir = tmp_path / "keys"
    keys = PinnedKeySet(backend.url, pins, keys_dir, clock=clock)
    assert keys.refresh_sync()
    backend.stop()  # from here on the network is down
    data_dir = tmp_path / "data"
    LeaseStore(data_dir, clock=clock).save_lease(session.lease)
    return OfflineSetup(
        session, r.json(), clock, TokenVerifier(keys, clock=clock), data_dir, pins, keys_dir
    )


def mode_of(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


# --- the lease itself ---------------------------------------------------------------------------


def test_the_lease_works_offline_until_it_expires_then_is_refused(
    offline: OfflineSetup, backend: AgentBackend
) -> None:
    store = offline.store()
    verifier = offline.fresh_verifier()  # cached keys only: the server is down
    info = store.check_offline(verifier, offline.session.device)
    lic = offline.license
    assert info.subject == offline.session.user_id
    assert (info.plan, info.status, info.active) == (lic["plan"], lic["status"], True)
    assert info.quota_limit == lic["quota"]["limit"]
    assert info.features == tuple(lic["features"])
    end = lic["quota"]["period_end"]
    assert info.period_end == (
        None if end is None else datetime.fromisoformat(end).replace(microsecond=0)
    )
    assert info.expires_at == datetime.fromisoformat(lic["lease_expires_at"]).replace(microsecond=0)
    ttl = backend.services.ctx.settings.lease_ttl_seconds
    assert info.expires_at - info.issued_at == timedelta(seconds=ttl)

    offline.clock.set(info.expires_at - timedelta(minutes=1))
    assert store.check_offline(verifier, offline.session.device) == info
    offline.clock.set(info.expires_at + timedelta(seconds=verifier.leeway_seconds + 1))
    with pytest.raises(TokenExpired, match=r"lease expired at .*renew"):
        store.check_offline(verifier, offline.session.device)
    # After a restart (nothing cached in memory) the verdict is the same.
    with pytest.raises(TokenExpired):
        offline.store().check_offline(offline.fresh_verifier(), offline.session.device)


def test_a_lease_for_another_device_is_refused(offline: OfflineSetup) -> None:
    store = offline.store()
    other = device_claim(fingerprint())
    with pytest.raises(DeviceMismatch, match="another device"):
        store.check_offline(offline.verifier, other)
    assert store.check_offline(offline.verifier, offline.session.device).subject
    # A success for the right device is not remembered for another one.
    with pytest.raises(DeviceMismatch):
        store.check_offline(offline.verifier, other)


def test_without_a_lease_the_check_says_so(tmp_path: Path, offline: OfflineSetup) -> None:
    store = LeaseStore(tmp_path / "empty", clock=offline.clock)
    assert store.lease is None
    with pytest.raises(NoOfflineLease, match="no offline lease is stored") as caught:
        store.check_offline(offline.verifier, offline.session.device)
    assert isinstance(caught.value, Offline)
    assert not (tmp_path / "empty").exists()  # a failed check writes nothing

    store = offline.store()
    store.clear_lease()
    with pytest.raises(NoOfflineLease, match="signed out"):
        store.check_offline(offline.verifier, offline.session.device)
    with pytest.raises(NoOfflineLease):
        offline.store().check_offline(offline.verifier, offline.session.device)


def test_save_lease_refuses_what_is_not_a_jwt(tmp_path: Path) -> None:
    store = LeaseStore(tmp_path)
    for bad in ("", "not-a-token", "a.b", "a" * 20_000 + ".b.c"):
        with pytest.raises(ValueError, match="compact JWS"):
            store.save_lease(bad)
    assert not (tmp_path / LICENSE_FILE_NAME).exists()


# --- the clock ----------------------------------------------------------------------------------


def test_a_clock_set_back_more_than_5_minutes_is_tampering(offline: OfflineSetup) -> None:
    store = offline.store()
    device = offline.session.device
    offline.clock.advance(3600)  # an hour after the lease was issued: going back stays after it
    start = offline.clock.now()
    store.check_offline(offline.verifier, device)
    assert store.last_seen == start

    offline.clock.set(start - timedelta(seconds=CLOCK_ROLLBACK_TOLERANCE_SECONDS))
    store.check_offline(offline.verifier, device)  # exactly 5 min back: still fine
    offline.clock.set(start - timedelta(minutes=4))
    store.check_offline(offline.verifier, device)
    assert store.last_seen == start  # a small step back never lowers the time seen

    offline.clock.set(start - timedelta(seconds=CLOCK_ROLLBACK_TOLERANCE_SECONDS + 1))
    with pytest.raises(TamperDetected, match=r"5\.0 min behind the latest time already seen"):
        store.check_offline(offline.verifier, device)
    offline.clock.set(start - timedelta(days=2))
    with pytest.raises(TamperDetected, match="treated as tampering"):
        store.check_offline(offline.verifier, device)
    # Once the clock is right again, the lease works again.
    offline.clock.set(start + timedelta(minutes=1))
    assert store.check_offline(offline.verifier, device).subject == offline.session.user_id


def test_the_time_seen_survives_a_restart(offline: OfflineSetup) -> None:
    device = offline.session.device
    start = offline.clock.now()
    offline.store().check_offline(offline.verifier, device)
    offline.clock.advance(3600)
    offline.store().check_offline(offline.verifier, device)

    restarted = offline.store()
    assert restarted.last_seen == start + timedelta(hours=1)
    offline.clock.set(start + timedelta(minutes=50))
    with pytest.raises(TamperDetected):
        restarted.check_offline(offline.verifier, device)
    with pytest.raises(TamperDetected):
        restarted.check_offline(offline.fresh_verifier(), device)


def test_observed_times_count_and_persist(offline: OfflineSetup) -> None:
    device = offline.session.device
    start = offline.clock.now()
    store = offline.store()
    store.observe_time(start + timedelta(hours=2))  # e.g. a server Date header
    store.observe_time(start)  # an earlier time changes nothing
    assert store.last_seen == start + timedelta(hours=2)
    with pytest.raises(TamperDetected):
        offline.store().check_offline(offline.verifier, device)

    # A small step is kept in memory, and written by flush().
    store.observe_time(start + timedelta(hours=2, seconds=30))
    assert offline.store().last_seen == start + timedelta(hours=2)
    store.flush()
    assert offline.store().last_seen == start + timedelta(hours=2, seconds=30)

    with pytest.raises(ValueError, match="timezone-aware"):
        store.observe_time(datetime(2026, 1, 1))


def test_reset_last_seen_recovers_from_a_clock_that_was_ahead(offline: OfflineSetup) -> None:
    device = offline.session.device
    start = offline.clock.now()
    store = offline.store()
    store.observe_time(start + timedelta(days=365))
    with pytest.raises(TamperDetected):
        store.check_offline(offline.verifier, device)
    store.reset_last_seen(start)
    assert offline.store().last_seen == start
    assert store.check_offline(offline.verifier, device).subject == offline.session.user_id


def test_the_signed_issue_time_counts_as_seen(offline: OfflineSetup) -> None:
    store = offline.store()
    offline.clock.advance(-20)  # slightly behind the server: within the 30 s leeway
    info = store.check_offline(offline.verifier, offline.session.device)
    assert store.last_seen == info.issued_at


# --- the file -----------------------------------------------------------------------------------


def test_license_json_is_private_and_holds_the_lease_and_time(offline: OfflineSetup) -> None:
    store = offline.store()
    store.check_offline(offline.verifier, offline.session.device)
    store.flush()
    path = offline.data_dir / LICENSE_FILE_NAME
    assert mode_of(path) == 0o600
    document = json.loads(path.read_text())
    assert document == {
        "format": LICENSE_FILE_FORMAT,
        "lease": offline.session.lease,
        "last_seen": offline.clock.now().isoformat(),
    }
    assert sorted(p.name for p in offline.data_dir.iterdir()) == [LICENSE_FILE_NAME]


def test_checks_do_not_rewrite_the_file_each_time(offline: OfflineSetup) -> None:
    store = offline.store()
    path = offline.data_dir / LICENSE_FILE_NAME
    store.check_offline(offline.verifier, offline.session.device)
    before = os.stat(path)
    for _ in range(20):
        offline.clock.advance(1)
        store.check_offline(offline.verifier, offline.session.device)
    after = os.stat(path)
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert store.last_seen == offline.clock.now()  # in memory it moved on
    offline.clock.advance(60)
    store.check_offline(offline.verifier, offline.session.device)
    assert os.stat(path).st_ino != before.st_ino  # a minute later it was written


def test_a_change_by_another_instance_is_picked_up(offline: OfflineSetup) -> None:
    first, second = offline.store(), offline.store()
    assert first.check_offline(offline.verifier, offline.session.device)
    second.clear_lease()
    with pytest.raises(NoOfflineLease):
        first.check_offline(offline.verifier, offline.session.device)
    second.save_lease(offline.session.lease)
    assert first.check_offline(offline.verifier, offline.session.device)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"{not json", "corrupt"),
        (b"\xff\xfe\x00garbage", "corrupt"),
        (b"", "corrupt"),
        (b"[1, 2, 3]", "not a TGFlow license file"),
        (b'{"lease": "a.b.c", "last_seen": null}', "not a TGFlow license file"),
        (b'{"format": "tgflow.license/1", "lease": 42}', "malformed lease"),
        (b'{"format": "tgflow.license/1", "lease": null, "last_seen": "yesterday"}', "last_seen"),
        (b'{"format": "tgflow.license/1", "lease": null, "last_seen": "2026-01-01T00:00"}', "last"),
        (b'{"format": "tgflow.license/1", "lease": null, "last_seen": 5}', "malformed last_seen"),
        (b" " * (70 * 1024), "too large"),
    ],
)
def test_a_corrupt_or_foreign_license_json_gives_a_clear_error(
    offline: OfflineSetup, content: bytes, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = offline.data_dir / LICENSE_FILE_NAME
    path.write_bytes(content)
    store = offline.store()
    with (
        caplog.at_level(logging.WARNING, logger="tgflow.agent"),
        pytest.raises(NoOfflineLease, match=reason),
    ):
        store.check_offline(offline.verifier, offline.session.device)
    assert any(reason in r.getMessage() for r in caplog.records)
    # Fetching a new lease repairs the file.
    store.save_lease(offline.session.lease)
    assert store.check_offline(offline.verifier, offline.session.device).subject
    assert json.loads(path.read_text())["format"] == LICENSE_FILE_FORMAT
    assert mode_of(path) == 0o600


def test_an_unreadable_license_json_is_reported(offline: OfflineSetup) -> None:
    path = offline.data_dir / LICENSE_FILE_NAME
    path.unlink()
    path.mkdir()  # reading a directory fails with an OSError
    with pytest.raises(NoOfflineLease, match="cannot be read"):
        offline.store().check_offline(offline.verifier, offline.session.device)


def test_the_default_data_dir_is_platformdirs_tgflow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    if os.name != "posix" or os.uname().sysname != "Linux":
        pytest.skip("XDG_DATA_HOME decides the data dir on Linux only")
    assert LeaseStore().path == tmp_path / "xdg" / "TGFlow" / LICENSE_FILE_NAME


def test_last_seen_is_utc(offline: OfflineSetup) -> None:
    store = offline.store()
    store.check_offline(offline.verifier, offline.session.device)
    seen = store.last_seen
    assert seen is not None and seen.tzinfo == UTC
