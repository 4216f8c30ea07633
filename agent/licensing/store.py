"""The activated license file, kept in ``license-file.json`` and re-verified at every check.

The file is stored as it came (the armoured text) with the license key the user typed (needed
to open an encrypted file again), mode 0600, replaced atomically. Nothing read back is trusted:
every :meth:`LicenseFileStore.check` verifies the text again, so an edited store fails like a
forged file. A file of the same license with a lower ``file_version`` than the one kept is
refused, so a renewal or upgrade (version + 1) cannot be undone by re-activating an old file;
another license may replace the kept one (the customer switched licenses).
"""

from __future__ import annotations

import json
import threading
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from agent.errors import LicenseFileOutdated, LicenseFileRejected
from agent.private_files import default_data_dir, write_private_file

from .files import License, LicenseFileVerifier

#: Name of the file inside the data directory.
LICENSE_STORE_FILE_NAME: Final = "license-file.json"
_FORMAT: Final = "tgflow.license-store/1"
_MAX_BYTES: Final = 128 * 1024


class NoLicenseFile(LicenseFileRejected):
    """No license file was activated on this installation (or the store cannot be read)."""


class LicenseFileStore:
    """The installation's activated license file. Thread-safe."""

    def __init__(self, verifier: LicenseFileVerifier, data_dir: Path | None = None) -> None:
        """Keep the file in ``data_dir/license-file.json`` (default: the agent's data dir)."""
        self.path = Path(data_dir if data_dir is not None else default_data_dir()) / (
            LICENSE_STORE_FILE_NAME
        )
        self.verifier = verifier
        self._lock = threading.Lock()

    def activate(
        self, text: str, license_key: str | None = None, *, now: datetime | None = None
    ) -> License:
        """Verify ``text`` and keep it as the installation's license; returns the license.

        Raises what :meth:`LicenseFileVerifier.verify` raises, :class:`LicenseFileRejected`
        for an older version of the license kept, and :class:`OSError` if it cannot be saved.
        """
        with self._lock:
            new = self.verifier.verify(text, license_key, now=now)
            kept = self._read()
            if kept is not None and kept.get("license_key") == new.license_key:
                version = kept.get("file_version")
                if isinstance(version, int) and version > new.file_version:
                    raise LicenseFileOutdated(
                        f"this is version {new.file_version} of license {new.license_key}; "
                        f"version {version} is already active"
                    )
            document = {
                "format": _FORMAT,
                "license_key": new.license_key,
                "file_version": new.file_version,
                "file": text,
            }
            write_private_file(
                self.path, json.dumps(document).encode("utf-8"), prefix=".license-file-"
            )
            return new

    def kept_key(self) -> str | None:
        """The license key of the kept file (``None`` when none is kept), unverified."""
        with self._lock:
            kept = self._read()
        key = None if kept is None else kept.get("license_key")
        return key if isinstance(key, str) else None

    def clear(self) -> None:
        """Forget the kept file (deactivation); nothing happens when none is kept."""
        with self._lock:
            self.path.unlink(missing_ok=True)

    def check(self, *, now: datetime | None = None) -> License:
        """The kept license, verified again now (signature, times, clock, revocation, …).

        Raises :class:`NoLicenseFile` when none is kept, else what ``verify`` raises.
        """
        with self._lock:
            kept = self._read()
        if kept is None:
            raise NoLicenseFile(f"no license file has been activated ({self.path})")
        text, key = kept.get("file"), kept.get("license_key")
        if not isinstance(text, str) or not isinstance(key, str):
            raise NoLicenseFile(f"{self.path} is damaged; activate the license file again")
        return self.verifier.verify(text, key, now=now)

    def _read(self) -> dict[str, Any] | None:
        try:
            with open(self.path, "rb") as fh:
                data = fh.read(_MAX_BYTES + 1)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise NoLicenseFile(f"{self.path} cannot be read: {exc}") from exc
        try:
            document = json.loads(data.decode("utf-8")) if len(data) <= _MAX_BYTES else None
        except (UnicodeDecodeError, ValueError):
            document = None
        if not isinstance(document, dict) or document.get("format") != _FORMAT:
            raise NoLicenseFile(f"{self.path} is damaged; activate the license file again")
        return document
