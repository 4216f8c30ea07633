"""The signed update notice, agent side (agent/updates.py): a genuine newer release is told; a
forged, unpinned, older, equal or replayed manifest is ignored; the automatic check asks the
server at most once a day (a fake clock)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from agent.clock import FakeClock
from agent.errors import Offline, TokenInvalid, UnpinnedKey, UntrustedKey
from agent.key_pins import PinnedKeySet
from agent.protocol import ReleaseManifestClaims
from agent.updates import UPDATES_FILE_NAME, UpdateCheck, UpdateChecker, downloads_for
from tests.helpers.license_files import NOW, Vendor, vendor
from tests.helpers.releases import FakeReleaseServer, signed, tamper

BASE_URL = "http://tgflow.test"


def checker(
    data_dir: Path, pins: list[str], clock: FakeClock, *, version: str = "0.1.0"
) -> UpdateChecker:
    keys = PinnedKeySet(BASE_URL, pins, data_dir, clock=clock)
    return UpdateChecker(BASE_URL, keys, data_dir, current_version=version, clock=clock)


def check(updates: UpdateChecker, server: FakeReleaseServer, *, force: bool = False) -> UpdateCheck:
    async def run() -> UpdateCheck:
        async with server.client() as client:
            return await updates.check(client, force=force)

    return asyncio.run(run())


@pytest.fixture
def server_key(tmp_path: Path) -> Vendor:
    return vendor(tmp_path / "server-keys")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


def test_a_genuine_newer_release_is_told_with_its_links_and_kept(
    tmp_path: Path, server_key: Vendor, clock: FakeClock
) -> None:
    server = FakeReleaseServer(server_key.keys.jwks(), signed(server_key.signer, "0.2.0"))
    updates = checker(tmp_path / "desktop", [server_key.pin], clock)
    result = check(updates, server)
    assert result.asked and result.ignored is None
    assert result.notice is not None and result.notice.version == "0.2.0"
    linux = downloads_for(result.notice, "linux-x86_64")
    assert [d.name for d in linux] == ["tgflow-0.2.0-linux-x86_64.tar.gz"]
    assert len(downloads_for(result.notice, "macos-arm64")) == 2  # none for it: all shown
    # Kept across a restart (re-verified from the file, offline).
    again = checker(tmp_path / "desktop", [server_key.pin], clock)
    notice = again.notice()
    assert notice is not None and notice.version == "0.2.0"


def test_a_forged_manifest_is_ignored(tmp_path: Path, server_key: Vendor, clock: FakeClock) -> None:
    genuine = signed(server_key.signer, "0.2.0")
    forged = tamper(genuine, lambda c: c.update(version="9.0.0"))
    server = FakeReleaseServer(server_key.keys.jwks(), forged)
    updates = checker(tmp_path, [server_key.pin], clock)
    result = check(updates, server)
    assert result.notice is None and result.ignored is not None
    assert "signature" in result.ignored
    assert updates.newest is None
    with pytest.raises(TokenInvalid):
        updates.verify(forged)


def test_a_manifest_signed_by_an_unpinned_key_is_ignored(
    tmp_path: Path, server_key: Vendor, clock: FakeClock
) -> None:
    other = vendor(tmp_path / "other-keys")
    # The server publishes the other key too: published is not trusted, the pins decide.
    jwks = {"keys": [*server_key.keys.jwks()["keys"], *other.keys.jwks()["keys"]]}
    server = FakeReleaseServer(jwks, signed(other.signer, "0.2.0"))
    updates = checker(tmp_path / "desktop", [server_key.pin], clock)
    result = check(updates, server)
    assert result.notice is None and result.ignored is not None
    with pytest.raises(UnpinnedKey):
        updates.verify(signed(other.signer, "0.2.0"))
    # Never seen at all: untrusted as well.
    lone = checker(tmp_path / "lone", [server_key.pin], clock)
    with pytest.raises(UntrustedKey):
        lone.verify(signed(other.signer, "0.2.0"))


def test_another_signed_document_never_passes_as_a_manifest(
    tmp_path: Path, server_key: Vendor, clock: FakeClock
) -> None:
    server = FakeReleaseServer(server_key.keys.jwks(), server_key.revocation_list([]))
    updates = checker(tmp_path, [server_key.pin], clock)
    result = check(updates, server)
    assert result.notice is None and result.ignored is not None and "typ" in result.ignored


@pytest.mark.parametrize("published", ["0.1.0", "0.1", "0.0.9"])
def test_a_release_not_newer_than_the_running_version_is_not_told(
    tmp_path: Path, server_key: Vendor, clock: FakeClock, published: str
) -> None:
    server = FakeReleaseServer(server_key.keys.jwks(), signed(server_key.signer, published))
    updates = checker(tmp_path, [server_key.pin], clock, version="0.1.0")
    result = check(updates, server)
    assert result.asked and result.ignored is None and result.notice is None
    assert updates.newest is not None and updates.newest.version == published


def test_a_replayed_older_manifest_after_a_newer_one_is_ignored(
    tmp_path: Path, server_key: Vendor, clock: FakeClock
) -> None:
    old = signed(server_key.signer, "0.2.0", iat=1_790_000_000)
    new = signed(server_key.signer, "0.3.0", iat=1_790_100_000)
    server = FakeReleaseServer(server_key.keys.jwks(), new)
    updates = checker(tmp_path / "desktop", [server_key.pin], clock)
    assert check(updates, server).notice.version == "0.3.0"  # type: ignore[union-attr]
    # A man in the middle (or a stale cache) answers with the older, genuinely signed one.
    server.manifest = old
    replayed = check(updates, server, force=True)
    assert replayed.ignored is not None and "older" in replayed.ignored
    assert replayed.notice is not None and replayed.notice.version == "0.3.0"
    # Also after a restart, and for the same version signed earlier.
    restarted = checker(tmp_path / "desktop", [server_key.pin], clock)
    server.manifest = signed(server_key.signer, "0.3.0", iat=1_790_000_001)
    again = check(restarted, server, force=True)
    assert again.ignored is not None
    kept = json.loads((tmp_path / "desktop" / UPDATES_FILE_NAME).read_text(encoding="utf-8"))
    assert kept["manifest"] == new


def test_an_edited_state_file_cannot_forge_a_release(
    tmp_path: Path, server_key: Vendor, clock: FakeClock
) -> None:
    genuine = signed(server_key.signer, "0.2.0")
    path = tmp_path / UPDATES_FILE_NAME
    forged = tamper(genuine, lambda c: c.update(version="9.9"))
    path.write_text(json.dumps({"format": "tgflow.updates/1", "manifest": forged}), "utf-8")
    jwks_cache = {"jwks": server_key.keys.jwks()}
    (tmp_path / "jwks.json").write_text(json.dumps(jwks_cache), encoding="utf-8")
    assert checker(tmp_path, [server_key.pin], clock).notice() is None


def test_the_automatic_check_asks_at_most_once_a_day(
    tmp_path: Path, server_key: Vendor, clock: FakeClock
) -> None:
    server = FakeReleaseServer(server_key.keys.jwks(), None)  # nothing published yet
    updates = checker(tmp_path, [server_key.pin], clock)
    assert updates.due()
    first = check(updates, server)
    assert first.asked and first.notice is None and server.asked == 1
    clock.advance(23 * 3600)
    assert not check(updates, server).asked and server.asked == 1
    # Help → Check for updates asks whenever told.
    assert check(updates, server, force=True).asked and server.asked == 2
    # The time is kept: a restart an hour later does not ask again.
    clock.advance(3600)
    restarted = checker(tmp_path, [server_key.pin], clock)
    assert not check(restarted, server).asked and server.asked == 2
    clock.advance(23 * 3600)
    server.manifest = signed(server_key.signer, "0.2.0")
    found = check(restarted, server)
    assert found.asked and found.notice is not None and server.asked == 3
    # Not due again, it still tells what it knows, without asking.
    quiet = check(restarted, server)
    assert not quiet.asked and quiet.notice == found.notice and server.asked == 3
    # A clock set back does not silence the check until it catches up.
    clock.advance(-7 * 24 * 3600)
    assert check(restarted, server).asked and server.asked == 4


def test_a_server_that_cannot_be_reached_is_asked_again_tomorrow(
    tmp_path: Path, server_key: Vendor, clock: FakeClock
) -> None:
    updates = checker(tmp_path, [server_key.pin], clock)
    server = FakeReleaseServer(server_key.keys.jwks())

    def down(_request: object) -> None:
        raise __import__("httpx").ConnectError("refused")

    server.handler = down  # type: ignore[assignment,method-assign]
    with pytest.raises(Offline):
        check(updates, server)
    assert updates.checked_at == clock.now() and not updates.due()


def test_claims_are_strictly_typed() -> None:
    from pydantic import ValidationError

    from tests.helpers.releases import manifest

    good = manifest().model_dump(mode="json")
    ReleaseManifestClaims.model_validate({**good, "iss": "tgflow", "iat": 1})
    for bad in (
        {"version": "v1"},
        {"downloads": []},
        {"downloads": [{**good["downloads"][0], "sha256": "AB" * 32}]},
        {"downloads": [{**good["downloads"][0], "url": "javascript:alert(1)"}]},
        {"downloads": [good["downloads"][0], good["downloads"][0]]},
    ):
        with pytest.raises(ValidationError):
            ReleaseManifestClaims.model_validate({**good, "iss": "tgflow", "iat": 1, **bad})
