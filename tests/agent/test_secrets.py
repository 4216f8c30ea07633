"""The refresh-token store: the OS keyring, and the 0600 file where no keyring exists."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import keyring.backends.fail
import keyring.backends.null
import pytest
from keyring.errors import KeyringLocked, NoKeyringError

import agent.private_files
from agent.errors import SecretStoreError
from agent.secrets import (
    DEFAULT_ACCOUNT,
    FALLBACK_FILE_NAME,
    KEYRING_SERVICE,
    RefreshTokenStore,
)
from tests.helpers.keyrings import MemoryKeyring

TOKEN = "rt_0123456789abcdefghijklmnopqrstuvwxyzABCDE"
ROTATED = "rt_ZYXWVUTSRQPONMLKJIHGFEDCBA9876543210zyxwv"


class LockedKeyring(MemoryKeyring):
    """A keyring that exists but refuses access (locked, or the user said no)."""

    def get_password(self, service: str, username: str) -> str | None:
        raise KeyringLocked("the keyring is locked")

    def set_password(self, service: str, username: str, password: str) -> None:
        raise KeyringLocked("the keyring is locked")


class VanishingKeyring(MemoryKeyring):
    """A backend that looked usable but reports no keyring on first use."""

    def set_password(self, service: str, username: str, password: str) -> None:
        raise NoKeyringError("no D-Bus session")


def mode_of(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def fallback_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.name.startswith("tgflow.agent")
        and r.levelno == logging.WARNING
        and "instead of the OS keyring" in r.getMessage()
    ]


# --- keyring ------------------------------------------------------------------------------------


def test_keyring_round_trip(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    ring = MemoryKeyring()
    with caplog.at_level(logging.WARNING, logger="tgflow.agent"):
        store = RefreshTokenStore(tmp_path, backend=ring)
    assert not store.fell_back and store.fallback_reason is None
    assert store.backend_name == f"keyring:{MemoryKeyring.__module__}.MemoryKeyring"
    assert fallback_warnings(caplog) == []
    assert store.load() is None

    store.save(TOKEN)
    assert ring.data == {(KEYRING_SERVICE, DEFAULT_ACCOUNT): TOKEN}
    assert store.load() == TOKEN
    store.save(ROTATED)
    assert RefreshTokenStore(tmp_path, backend=ring).load() == ROTATED
    assert not (tmp_path / FALLBACK_FILE_NAME).exists()  # never touches the disk

    store.clear()
    assert ring.data == {}
    assert store.load() is None
    store.clear()  # clearing twice is fine


def test_the_account_email_is_the_keyring_user_name(tmp_path: Path) -> None:
    ring = MemoryKeyring()
    RefreshTokenStore(tmp_path, account="ann@example.com", backend=ring).save(TOKEN)
    assert ring.data == {(KEYRING_SERVICE, "ann@example.com"): TOKEN}
    assert RefreshTokenStore(tmp_path, account="bob@example.com", backend=ring).load() is None
    with pytest.raises(ValueError, match="account"):
        RefreshTokenStore(tmp_path, account="", backend=ring)


def test_a_locked_keyring_is_an_error_not_a_silent_fallback(tmp_path: Path) -> None:
    store = RefreshTokenStore(tmp_path, backend=LockedKeyring())
    with pytest.raises(SecretStoreError, match="locked"):
        store.save(TOKEN)
    with pytest.raises(SecretStoreError, match="locked"):
        store.load()
    assert not store.fell_back
    assert not (tmp_path / FALLBACK_FILE_NAME).exists()


def test_values_that_are_not_tokens_are_refused(tmp_path: Path) -> None:
    store = RefreshTokenStore(tmp_path, backend=MemoryKeyring())
    for bad in ("", "two words", "line\nbreak", "tab\t", "x" * 5000):
        with pytest.raises(ValueError, match="refresh token"):
            store.save(bad)
    assert store.load() is None


# --- fallback -----------------------------------------------------------------------------------


def test_without_a_keyring_the_token_goes_to_a_private_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "data" / FALLBACK_FILE_NAME
    with caplog.at_level(logging.WARNING, logger="tgflow.agent"):
        store = RefreshTokenStore(tmp_path / "data", backend=keyring.backends.fail.Keyring())
    assert store.fell_back
    assert store.backend_name == "file"
    assert store.fallback_reason is not None and "no OS keyring" in store.fallback_reason
    assert store.location == str(path)
    [warning] = fallback_warnings(caplog)
    assert str(path) in warning.getMessage() and "0600" in warning.getMessage()

    assert store.load() is None
    store.save(TOKEN)
    assert path.read_text() == TOKEN + "\n"
    assert mode_of(path) == 0o600
    assert mode_of(path.parent) == 0o700
    assert store.load() == TOKEN
    store.save(ROTATED)
    assert mode_of(path) == 0o600
    # A restart reads the same file.
    assert RefreshTokenStore(tmp_path / "data", backend=keyring.backends.fail.Keyring()).load() == (
        ROTATED
    )
    assert sorted(p.name for p in path.parent.iterdir()) == [FALLBACK_FILE_NAME]  # no temp files

    store.clear()
    assert not path.exists()
    assert store.load() is None
    store.clear()


def test_the_null_backend_falls_back_too(tmp_path: Path) -> None:
    store = RefreshTokenStore(tmp_path, backend=keyring.backends.null.Keyring())
    assert store.fell_back and store.backend_name == "file"
    store.save(TOKEN)
    assert (tmp_path / FALLBACK_FILE_NAME).read_text().strip() == TOKEN


def test_no_keyring_reported_on_first_use_switches_to_the_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = RefreshTokenStore(tmp_path, backend=VanishingKeyring())
    assert not store.fell_back
    with caplog.at_level(logging.WARNING, logger="tgflow.agent"):
        store.save(TOKEN)
    assert store.fell_back and "no D-Bus session" in (store.fallback_reason or "")
    assert len(fallback_warnings(caplog)) == 1
    assert (tmp_path / FALLBACK_FILE_NAME).read_text().strip() == TOKEN
    assert store.load() == TOKEN


def test_saving_to_the_file_is_fsynced_before_returning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[str] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        mode = os.fstat(fd).st_mode
        synced.append("dir" if stat.S_ISDIR(mode) else "file")
        real_fsync(fd)

    monkeypatch.setattr(agent.private_files.os, "fsync", recording_fsync)
    store = RefreshTokenStore(tmp_path, backend=keyring.backends.fail.Keyring())
    store.save(TOKEN)
    assert synced[0] == "file"  # the content, before the rename
    if os.name == "posix":
        assert synced[-1] == "dir"  # the rename itself


def test_a_file_left_readable_by_others_is_restricted_on_load(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    if os.name != "posix":
        pytest.skip("POSIX permissions")
    store = RefreshTokenStore(tmp_path, backend=keyring.backends.fail.Keyring())
    store.save(TOKEN)
    path = tmp_path / FALLBACK_FILE_NAME
    path.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="tgflow.agent"):
        assert store.load() == TOKEN
    assert mode_of(path) == 0o600
    assert any("readable by others" in r.getMessage() for r in caplog.records)


def test_a_garbled_file_is_no_token(tmp_path: Path) -> None:
    (tmp_path / FALLBACK_FILE_NAME).write_text("not a token at all\n")
    store = RefreshTokenStore(tmp_path, backend=keyring.backends.fail.Keyring())
    assert store.load() is None
    (tmp_path / FALLBACK_FILE_NAME).write_bytes(b"\xff\xfe\xfd")
    with pytest.raises(SecretStoreError, match="cannot read"):
        store.load()


# --- moving between the two ---------------------------------------------------------------------


def test_a_token_left_in_the_file_moves_into_a_new_keyring(tmp_path: Path) -> None:
    RefreshTokenStore(tmp_path, backend=keyring.backends.fail.Keyring()).save(TOKEN)
    ring = MemoryKeyring()
    store = RefreshTokenStore(tmp_path, backend=ring)
    assert store.load() == TOKEN
    assert ring.data == {(KEYRING_SERVICE, DEFAULT_ACCOUNT): TOKEN}
    assert not (tmp_path / FALLBACK_FILE_NAME).exists()


def test_saving_to_the_keyring_removes_a_stale_file(tmp_path: Path) -> None:
    RefreshTokenStore(tmp_path, backend=keyring.backends.fail.Keyring()).save(TOKEN)
    ring = MemoryKeyring()
    RefreshTokenStore(tmp_path, backend=ring).save(ROTATED)
    assert not (tmp_path / FALLBACK_FILE_NAME).exists()
    assert ring.data[(KEYRING_SERVICE, DEFAULT_ACCOUNT)] == ROTATED


def test_clear_removes_the_token_from_both_places(tmp_path: Path) -> None:
    ring = MemoryKeyring()
    ring.data[(KEYRING_SERVICE, DEFAULT_ACCOUNT)] = TOKEN
    (tmp_path / FALLBACK_FILE_NAME).write_text(ROTATED)
    RefreshTokenStore(tmp_path, backend=ring).clear()
    assert ring.data == {}
    assert not (tmp_path / FALLBACK_FILE_NAME).exists()
