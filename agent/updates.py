"""The signed update notice (docs/updates.md): is there a newer release, and where is it?

The server serves the newest release manifest signed with its ``license`` key
(``GET /releases/latest``). :class:`UpdateChecker` fetches it at most once per
``interval`` (a day) unless asked explicitly, verifies it like every signed document
(:class:`~agent.licensing.DocumentVerifier`: ES256, a pinned key named by ``kid``, ``typ``
release-manifest, the issuer), and keeps the newest manifest it has seen in ``updates.json``.
A manifest that is forged, signed by an unpinned key, or older than (or the same as) one seen
before is ignored, so replaying an old manifest cannot hide a newer release; one that is not
newer than the running version is kept but announces nothing. Nothing is ever downloaded or
installed: the caller shows the link and the checksum.
"""

from __future__ import annotations

import contextlib
import json
import logging
import platform
import sys
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Final

import httpx
import jwt

from agent.clock import Clock
from agent.errors import Offline, TokenInvalid, TokenRejected, UnexpectedResponse
from agent.key_pins import PinnedKeySet
from agent.licensing.documents import DocumentVerifier
from agent.private_files import read_state_file, write_private_file
from agent.protocol import (
    RELEASE_MANIFEST_PATH,
    RELEASE_MANIFEST_TYP,
    ReleaseDownload,
    ReleaseManifestClaims,
    product_version_tuple,
)
from agent.tokens import DEFAULT_ISSUER

log = logging.getLogger("tgflow.agent.updates")

#: Name of the state file inside the data directory.
UPDATES_FILE_NAME: Final = "updates.json"
#: The automatic check asks the server at most this often.
CHECK_INTERVAL: Final = timedelta(days=1)
#: A larger answer is refused unread (a manifest is a few KiB).
MAX_MANIFEST_BYTES: Final = 64 * 1024
_FORMAT: Final = "tgflow.updates/1"


@dataclass(frozen=True)
class UpdateCheck:
    """What a check found."""

    #: Whether the server was asked (``False``: the last check is less than a day old).
    asked: bool
    #: The newest genuine release newer than the running version, or ``None``.
    notice: ReleaseManifestClaims | None
    #: Why the server's manifest was ignored (forged, unpinned key, replayed), if it was.
    ignored: str | None = None


def current_platform() -> str:
    """This machine's platform as the archives name it (``linux-x86_64``, ``macos-arm64``)."""
    system = {"win32": "windows", "darwin": "macos"}.get(sys.platform, "linux")
    machine = platform.machine().lower()
    machine = {"amd64": "x86_64", "x64": "x86_64", "aarch64": "arm64"}.get(machine, machine)
    return f"{system}-{machine or 'unknown'}"


def downloads_for(manifest: ReleaseManifestClaims, target: str) -> tuple[ReleaseDownload, ...]:
    """The downloads for ``target``; all of them when none is for it (the user may know better)."""
    mine = tuple(d for d in manifest.downloads if d.platform == target)
    return mine or manifest.downloads


def _order(claims: ReleaseManifestClaims) -> tuple[tuple[int, ...], int]:
    return product_version_tuple(claims.version), claims.iat


class UpdateChecker:
    """Checks the server's signed release manifest. Thread-safe; one per installation."""

    def __init__(
        self,
        api_base_url: str,
        keys: PinnedKeySet,
        data_dir: Path,
        *,
        current_version: str,
        clock: Clock,
        issuer: str = DEFAULT_ISSUER,
        interval: timedelta = CHECK_INTERVAL,
        timeout: float = 10.0,
    ) -> None:
        """Check ``{api_base_url}/releases/latest`` against the pinned ``keys``; keep the state
        in ``data_dir/updates.json``."""
        self.url = api_base_url.rstrip("/") + RELEASE_MANIFEST_PATH
        self.keys = keys
        self.path = Path(data_dir) / UPDATES_FILE_NAME
        self.current_version = current_version
        self._current = product_version_tuple(current_version)
        self._clock = clock
        self._issuer = issuer
        self._interval = interval
        self._timeout = timeout
        self._verifier = DocumentVerifier(keys)
        self._lock = threading.Lock()
        self._checked_at: datetime | None = None
        self._newest: ReleaseManifestClaims | None = None
        self._newest_jws: str | None = None
        self._load()

    # --- queries --------------------------------------------------------------------------------

    @property
    def newest(self) -> ReleaseManifestClaims | None:
        """The newest genuine manifest seen (whatever its version)."""
        return self._newest

    @property
    def checked_at(self) -> datetime | None:
        """When the server was last asked (successfully or not)."""
        return self._checked_at

    def notice(self) -> ReleaseManifestClaims | None:
        """The newest manifest seen if it is of a newer version than the running one."""
        newest = self._newest
        if newest is None or product_version_tuple(newest.version) <= self._current:
            return None
        return newest

    def due(self) -> bool:
        """Whether the automatic check may ask the server now (a day since the last time)."""
        now, last = self._clock.now(), self._checked_at
        # A clock that ran back would otherwise silence the check until it caught up.
        return last is None or now < last or now - last >= self._interval

    # --- verifying ------------------------------------------------------------------------------

    def verify(self, jws: str) -> ReleaseManifestClaims:
        """Verify a manifest against the keys known now and return its claims (nothing kept).

        Raises :class:`TokenInvalid` / :class:`UntrustedKey` (:class:`UnpinnedKey`).
        """
        return self._verifier.verify_claims(
            jws,
            RELEASE_MANIFEST_TYP,
            ReleaseManifestClaims,
            what="release manifest",
            issuer=self._issuer,
        )

    def offer(self, jws: str) -> ReleaseManifestClaims:
        """Keep ``jws`` if it is genuine and newer than the newest seen; returns its claims.

        Raises like :meth:`verify`, and :class:`TokenInvalid` for a manifest that is not newer
        than one already seen (a replay): it is never kept.
        """
        claims = self.verify(jws)
        with self._lock:
            kept = self._newest
            if kept is not None and _order(claims) < _order(kept):
                raise TokenInvalid(
                    f"the release manifest of {claims.version} (signed {claims.iat}) is older "
                    f"than the one already seen ({kept.version}, signed {kept.iat})"
                )
            if kept is None or _order(claims) > _order(kept):
                self._newest, self._newest_jws = claims, jws
                self._save()
        return claims

    # --- checking -------------------------------------------------------------------------------

    async def check(self, client: httpx.AsyncClient, *, force: bool = False) -> UpdateCheck:
        """Ask the server unless the last check is less than a day old (``force``: ask anyway).

        A manifest that does not verify, or a replayed older one, is ignored (logged, and said
        in :attr:`UpdateCheck.ignored`). Raises :class:`Offline` when the server cannot be
        reached and :class:`UnexpectedResponse` for an answer that is not a manifest.
        """
        if not force and not self.due():
            return UpdateCheck(asked=False, notice=self.notice())
        with self._lock:
            # Counted before asking: a server that fails is asked again tomorrow, not at once.
            self._checked_at = self._clock.now()
            self._save()
        try:
            response = await client.get(self.url, timeout=self._timeout, follow_redirects=False)
        except httpx.HTTPError as exc:
            raise Offline(f"cannot reach {self.url}: {exc}") from exc
        if response.status_code == httpx.codes.NOT_FOUND:
            return UpdateCheck(asked=True, notice=self.notice())  # nothing published yet
        if response.status_code != httpx.codes.OK or len(response.content) > MAX_MANIFEST_BYTES:
            raise UnexpectedResponse(
                f"{self.url} answered HTTP {response.status_code}", status=response.status_code
            )
        jws = response.text.strip()
        try:
            await self._resolve_key(jws, client)
            self.offer(jws)
        except TokenRejected as exc:
            log.warning("the release manifest from %s is ignored: %s", self.url, exc)
            return UpdateCheck(asked=True, notice=self.notice(), ignored=str(exc))
        return UpdateCheck(asked=True, notice=self.notice())

    async def _resolve_key(self, jws: str, client: httpx.AsyncClient) -> None:
        # A key the cache does not know yet (a new install, a rotation) is fetched from the JWKS;
        # the pins still decide whether it is used.
        try:
            kid = jwt.get_unverified_header(jws).get("kid")
        except jwt.InvalidTokenError:
            return  # verify() says why
        if isinstance(kid, str) and kid:
            with contextlib.suppress(TokenRejected):  # verify() raises it, the manifest named
                await self.keys.resolve(kid, client)

    # --- the state file -------------------------------------------------------------------------

    def _save(self) -> None:
        document = {
            "format": _FORMAT,
            "checked_at": self._checked_at.isoformat() if self._checked_at else None,
            "manifest": self._newest_jws,
        }
        try:
            write_private_file(self.path, json.dumps(document).encode("utf-8"), prefix=".updates-")
        except OSError as exc:
            log.warning("cannot write %s: %s (kept in memory)", self.path, exc)

    def _load(self) -> None:
        document = read_state_file(self.path, _FORMAT, log)
        if document is None:
            return
        checked_at = document.get("checked_at")
        if isinstance(checked_at, str):
            try:
                parsed = datetime.fromisoformat(checked_at)
            except ValueError:
                parsed = None
            if parsed is not None and parsed.tzinfo is not None:
                self._checked_at = parsed
        jws = document.get("manifest")
        if isinstance(jws, str):
            # Re-verified: editing the file can only lose the manifest, never forge one.
            try:
                self._newest, self._newest_jws = self.verify(jws), jws
            except TokenRejected as exc:
                log.warning("the release manifest in %s does not verify (%s)", self.path, exc)
