"""Where the settings file is, and its bytes: found beside the frozen program or in the config
directory, read (size-capped, UTF-8 with or without a BOM), replaced atomically."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from pathlib import Path
from typing import Final

from agent.private_files import fsync_directory
from app.catalog import N_, Reason
from app.config.problems import SettingsError, SettingsProblem, os_reason
from app.config.validation import parse_settings
from app.paths import SETTINGS_FILE_NAME
from app.settings_schema import Settings

#: Mode of a settings file the program creates (it may hold the Telegram api_hash).
NEW_SETTINGS_FILE_MODE: Final = 0o600
#: A larger file is not a settings file.
MAX_SETTINGS_BYTES: Final = 1024 * 1024


def decode(data: bytes, path: Path) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SettingsError(
            [
                SettingsProblem(
                    path,
                    None,
                    None,
                    Reason(
                        N_("settings.reason.not_utf8"),
                        {"byte": f"{data[exc.start]:#04x}", "offset": exc.start},
                    ),
                )
            ]
        ) from None


def read_file(path: Path) -> bytes:
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_SETTINGS_BYTES + 1)
    except OSError as exc:
        raise SettingsError([SettingsProblem(path, None, None, os_reason(exc))]) from None
    if len(data) > MAX_SETTINGS_BYTES:
        raise SettingsError(
            [
                SettingsProblem(
                    path,
                    None,
                    None,
                    Reason(N_("settings.reason.too_large"), {"limit": MAX_SETTINGS_BYTES}),
                )
            ]
        )
    return data


def load_settings(path: Path | None) -> Settings:
    """Read and validate ``path``; ``None`` gives the defaults. Raises :class:`SettingsError`."""
    if path is None:
        return Settings()
    return parse_settings(decode(read_file(path), path), source=path)


def frozen_executable_dir() -> Path | None:
    """The directory of the frozen (PyInstaller) program, ``None`` when running from source.

    From source there is no "beside the program": the repository or the current directory is
    deliberately not searched, so a stray ``settings.ini`` there is never picked up.
    """
    if getattr(sys, "frozen", False):
        return Path(sys.executable).resolve().parent
    return None


def find_config(
    explicit: Path | None, *, executable_dir: Path | None, config_dir: Path
) -> Path | None:
    """The settings file to use, or ``None`` for the defaults.

    ``explicit`` (``--config PATH``) wins and must be an existing file, else
    :class:`SettingsError`; then ``settings.ini`` in ``executable_dir`` (see
    :func:`frozen_executable_dir`); then ``settings.ini`` in ``config_dir``.
    """
    if explicit is not None:
        if not explicit.exists():
            reason = Reason(N_("settings.reason.config_missing"))
        elif not explicit.is_file():
            reason = Reason(N_("settings.reason.config_not_file"))
        else:
            return explicit
        raise SettingsError([SettingsProblem(explicit, None, None, reason)])
    candidates = [config_dir / SETTINGS_FILE_NAME]
    if executable_dir is not None:
        candidates.insert(0, executable_dir / SETTINGS_FILE_NAME)
    return next((path for path in candidates if path.is_file()), None)


def replace_file(path: Path, text: str) -> None:
    try:
        mode = path.stat().st_mode & 0o7777
    except FileNotFoundError:
        mode = NEW_SETTINGS_FILE_MODE
    directory = path.parent
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=".settings-", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise SettingsError(
            [SettingsProblem(path, None, None, os_reason(exc, writing=True))]
        ) from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(text.encode("utf-8"))
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp_name, mode)
        os.replace(tmp_name, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise SettingsError(
            [SettingsProblem(path, None, None, os_reason(exc, writing=True))]
        ) from None
    fsync_directory(directory)
