"""The newest signed revocation list seen, kept in ``revocations.json`` and honoured offline.

A list comes from the server's public URL or inside a license file update. It is verified like
every signed document (pinned ``license`` key, ``typ`` revocation-list) and replaces the stored
one only when it was issued later: an older list, replayed to un-revoke a license, never wins.
The file is re-verified when read, so editing it can only remove the list, not forge one; the
highest ``iat`` ever accepted is also kept in memory for the life of the process.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from agent.errors import TokenRejected
from agent.private_files import default_data_dir, read_state_file, write_private_file
from agent.protocol import REVOCATION_LIST_TYP, RevocationListClaims
from agent.tokens import DEFAULT_ISSUER

from .documents import DocumentVerifier

log = logging.getLogger("tgflow.agent.licensing")

#: Name of the file inside the data directory.
REVOCATIONS_FILE_NAME: Final = "revocations.json"
_FORMAT: Final = "tgflow.revocations/1"


class RevocationStore:
    """The newest revocation list this installation has seen. Thread-safe."""

    def __init__(
        self,
        verifier: DocumentVerifier,
        data_dir: Path | None = None,
        *,
        issuer: str = DEFAULT_ISSUER,
    ) -> None:
        """Keep the list in ``data_dir/revocations.json`` (default: the agent's data dir)."""
        self.path = Path(data_dir if data_dir is not None else default_data_dir()) / (
            REVOCATIONS_FILE_NAME
        )
        self._verifier = verifier
        self._issuer = issuer
        self._lock = threading.Lock()
        self._loaded = False
        self._current: RevocationListClaims | None = None

    @property
    def current(self) -> RevocationListClaims | None:
        """The newest verified list, or ``None`` before the first."""
        with self._lock:
            self._load()
            return self._current

    def verify(
        self, jws: str, carried_key: Mapping[str, Any] | None = None
    ) -> RevocationListClaims:
        """Verify a revocation list and return its claims (nothing is stored).

        ``carried_key`` is the Signing-Key of the license file the list came in, used only if
        pinned (as for the file). Raises :class:`TokenInvalid` / :class:`UntrustedKey`.
        """
        return self._verifier.verify_claims(
            jws,
            REVOCATION_LIST_TYP,
            RevocationListClaims,
            what="revocation list",
            issuer=self._issuer,
            carried_key=carried_key,
        )

    def offer(self, jws: str, carried_key: Mapping[str, Any] | None = None) -> bool:
        """Keep ``jws`` if it is genuine and newer than the stored list; ``True`` if kept.

        An older (or the same) list is ignored. Raises like :meth:`verify` for a forged list and
        :class:`OSError` when the file cannot be written (the list is then kept in memory).
        """
        claims = self.verify(jws, carried_key)
        with self._lock:
            self._load()
            if self._current is not None and claims.iat <= self._current.iat:
                log.info(
                    "revocation list of %s ignored: not newer than the one kept (%s)",
                    claims.iat,
                    self._current.iat,
                )
                return False
            self._current = claims
            # The key is kept with the list so that it verifies again after a restart offline.
            document = {"format": _FORMAT, "list": jws, "key": carried_key}
            write_private_file(
                self.path, json.dumps(document).encode("utf-8"), prefix=".revocations-"
            )
            return True

    def is_revoked(self, license_key: str, file_version: int) -> bool:
        """Whether the newest list seen revokes this license file."""
        current = self.current
        if current is None:
            return False
        for entry in current.revoked:
            if entry.license_key == license_key and (
                entry.file_versions is None or file_version in entry.file_versions
            ):
                return True
        return False

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        document = read_state_file(self.path, _FORMAT, log)
        jws = None if document is None else document.get("list")
        if document is None or not isinstance(jws, str):
            return
        key = document.get("key")
        try:
            self._current = self.verify(jws, key if isinstance(key, Mapping) else None)
        except TokenRejected as exc:
            log.warning("the revocation list in %s does not verify (%s); ignored", self.path, exc)
