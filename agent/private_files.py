"""The agent's data directory and the owner-only files kept in it.

DESIGN.md ("Desktop behaviour"): secrets that have no OS keyring, ``license.json`` and the JWKS
cache live under platformdirs' user data dir ``TGFlow/``. Files there are written atomically (a
temporary file in the same directory, fsync'd, then renamed over the old one), so a crash leaves
either the old content or the new, never half of each, and they are created with mode 0600.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Final

import platformdirs

#: The application name platformdirs builds the data directory from.
APP_NAME: Final = "TGFlow"
#: Mode of every file the agent writes: readable and writable by the owner only.
PRIVATE_FILE_MODE: Final = 0o600
#: Mode of a data directory the agent creates.
PRIVATE_DIR_MODE: Final = 0o700


def default_data_dir() -> Path:
    """platformdirs' per-user data directory for TGFlow (``~/.local/share/TGFlow`` on Linux)."""
    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


def write_private_file(path: Path, data: bytes, *, prefix: str = ".tmp-") -> None:
    """Replace ``path`` with ``data`` atomically and durably, leaving it with mode 0600.

    The parent directory is created (mode 0700) when missing. The content is fsync'd before the
    rename and, where the platform allows it, the directory after it, so the new file survives a
    power cut once this returns. Raises :class:`OSError` on failure; the old file is then intact.
    """
    directory = path.parent
    directory.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR_MODE)
    # mkstemp creates the file 0600 from the start: the secret is never readable by others.
    fd, tmp_name = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp_name, PRIVATE_FILE_MODE)
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise
    fsync_directory(directory)


def fsync_directory(directory: Path) -> None:
    """Flush a directory entry change (a rename or an unlink) to disk, where the OS supports it."""
    if os.name != "posix":
        return  # Windows cannot open a directory; NTFS journals the rename itself.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def remove_file(path: Path) -> bool:
    """Delete ``path`` durably; ``True`` if it existed. Raises :class:`OSError` on failure."""
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    fsync_directory(path.parent)
    return True


def read_state_file(path: Path, file_format: str, log: logging.Logger) -> dict[str, Any] | None:
    """The JSON object in ``path`` if its ``format`` member is ``file_format``; ``None`` when
    the file is missing, unreadable or of another kind (logged: the caller starts afresh)."""
    try:
        document: Any = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("cannot read %s (%s); ignored", path, exc)
        return None
    if not isinstance(document, dict) or document.get("format") != file_format:
        log.warning("%s is not a %s file; ignored", path, file_format)
        return None
    return document
