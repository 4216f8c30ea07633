"""The offline license lease and the latest time seen, kept in ``license.json``.

DESIGN.md ("Tokens", "Desktop behaviour"): the lease lets the desktop work offline until it
expires; the agent refuses it when it was issued for another device or when the clock ran
backwards. The agent keeps the latest time it has seen (its own clock at each successful check,
a signed token's ``iat``, a server ``Date`` header) and treats a clock more than
:data:`agent.protocol.CLOCK_ROLLBACK_TOLERANCE_SECONDS` (5 min) behind it as tampering.

``license.json`` lives in the data directory with mode 0600 and is replaced atomically::

    {"format": "tgflow.license/1", "lease": "<RS256 JWT>", "last_seen": "2026-01-15T12:00:00+00:00"}

The lease and the time seen share one file on purpose: deleting or corrupting the file to forget
the time seen also forgets the lease, so the agent then cannot work offline at all.

The check is on the hot path (benchmark target ≤ 100 µs median), so :class:`LeaseStore` keeps the
file's content in memory and re-reads it only when its stat signature (inode, size, mtime)
changes, verifies a lease's signature once per (token, device, verifier, key) and afterwards
re-applies only the rules that depend on the time, and writes the time seen to disk at most once
per :data:`PERSIST_INTERVAL_SECONDS` of clock progress (plus on :meth:`LeaseStore.flush`).
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from agent.clock import Clock, SystemClock
from agent.errors import NoOfflineLease, TamperDetected, TokenExpired, TokenInvalid
from agent.key_pins import PinnedKey
from agent.private_files import default_data_dir, write_private_file
from agent.protocol import CLOCK_ROLLBACK_TOLERANCE_SECONDS
from agent.tokens import MAX_TOKEN_CHARS, LeaseClaims, TokenVerifier

log = logging.getLogger("tgflow.agent.lease")

#: Name of the lease file inside the data directory.
LICENSE_FILE_NAME: Final = "license.json"
#: Value of the file's ``format`` member; a file without it is not ours and is not used.
LICENSE_FILE_FORMAT: Final = "tgflow.license/1"
#: A larger file is refused unread (a real one is well under 4 KiB).
MAX_LICENSE_FILE_BYTES: Final = 64 * 1024
#: The time seen is written to disk when it is this many seconds ahead of the stored value.
#: Well inside the rollback tolerance: after a restart the detection is at most this much looser.
PERSIST_INTERVAL_SECONDS: Final = 60.0


@dataclass(frozen=True, slots=True)
class _Verified:
    """A lease whose signature and claims passed once; only the time rules remain per check."""

    token: str
    device: str
    verifier: TokenVerifier
    key: PinnedKey
    not_before: float  # nbf - leeway, seconds since the epoch
    not_after: float  # exp + leeway
    info: LeaseClaims


@dataclass(frozen=True, slots=True)
class _FileState:
    lease: str | None
    last_seen: float | None
    problem: str | None  # why the file gave no lease, when it was unusable


_StatSignature = tuple[int, int, int] | None


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat()


def _timestamp(when: datetime) -> float:
    if when.tzinfo is None:
        raise ValueError("a timezone-aware datetime is required")
    return when.timestamp()


def _duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.0f} s"


class LeaseStore:
    """``license.json``: the latest lease and the latest time seen, checked offline.

    Thread-safe. Pass the same clock to the store and to the :class:`TokenVerifier` it checks
    with; every decision about time is taken with that clock (or an explicit ``now``).
    """

    def __init__(self, data_dir: Path | None = None, *, clock: Clock | None = None) -> None:
        """Use ``data_dir/license.json`` (default: platformdirs' user data dir ``TGFlow/``).

        Nothing is created until something is saved; an existing file is read lazily.
        """
        self.path = Path(data_dir if data_dir is not None else default_data_dir()) / (
            LICENSE_FILE_NAME
        )
        self._clock: Clock = clock or SystemClock()
        self._lock = threading.Lock()
        self._signature: _StatSignature | bool = False  # False: never looked at the file
        self._lease: str | None = None
        self._problem: str | None = None
        self._last_seen: float | None = None
        self._persisted_last_seen: float | None = None
        self._verified: _Verified | None = None

    # --- queries --------------------------------------------------------------------------------

    @property
    def lease(self) -> str | None:
        """The stored lease JWT (unverified), or ``None``."""
        with self._lock:
            self._sync()
            return self._lease

    @property
    def last_seen(self) -> datetime | None:
        """The latest time seen (UTC), or ``None`` before the first one."""
        with self._lock:
            self._sync()
            return None if self._last_seen is None else datetime.fromtimestamp(self._last_seen, UTC)

    # --- updates --------------------------------------------------------------------------------

    def save_lease(self, token: str) -> None:
        """Store ``token`` (the ``lease`` of ``GET /license``) as the lease, durably.

        The token is not verified here; :meth:`check_offline` verifies it. Raises
        :class:`ValueError` for something that cannot be a JWT and :class:`OSError` when the file
        cannot be written.
        """
        if not isinstance(token, str) or token.count(".") != 2 or len(token) > MAX_TOKEN_CHARS:
            raise ValueError("a lease is a compact JWS (three dot-separated parts)")
        with self._lock:
            self._sync()
            self._lease = token
            self._problem = None
            self._verified = None
            self._write()

    def clear_lease(self) -> None:
        """Forget the lease (at logout); the latest time seen is kept."""
        with self._lock:
            self._sync()
            self._lease = None
            self._problem = "the lease was removed (signed out)"
            self._verified = None
            self._write()

    def observe_time(self, when: datetime) -> None:
        """Record ``when`` as seen if it is later than the latest time seen.

        Feed it every trustworthy time the agent comes across: a verified token's ``iat``, a
        server ``Date`` header. A time in the future is accepted as it is (DESIGN.md: the latest
        time seen, signed or not). It is written to disk when it moved far enough
        (:data:`PERSIST_INTERVAL_SECONDS`); :meth:`flush` writes it now.
        """
        seconds = _timestamp(when)
        with self._lock:
            self._sync()
            self._see(seconds)

    def reset_last_seen(self, when: datetime) -> None:
        """Set the latest time seen to ``when`` even if that moves it back, and write it.

        The way out after the clock was once set far ahead and then corrected, which otherwise
        looks like a rollback forever. Call it only with a time the server vouched for (the
        ``iat`` of a lease just fetched and verified online), never with the local clock.
        """
        seconds = _timestamp(when)
        with self._lock:
            self._sync()
            self._last_seen = seconds
            self._write()

    def flush(self) -> None:
        """Write the latest time seen if memory is ahead of the file (call it at shutdown)."""
        with self._lock:
            self._sync()
            if self._last_seen is not None and self._last_seen != self._persisted_last_seen:
                self._write()

    # --- the offline check ----------------------------------------------------------------------

    def check_offline(
        self, verifier: TokenVerifier, device: str, now: datetime | None = None
    ) -> LeaseClaims:
        """Decide, without the network, whether the stored lease lets this device work now.

        ``device`` is the lease's expected ``device`` claim (``agent.tokens.device_claim`` of the
        fingerprint). ``now`` defaults to the store's clock. In this order, it raises:

        - :class:`TamperDetected` when ``now`` is more than 5 minutes behind the latest time seen;
        - :class:`NoOfflineLease` (an :class:`Offline`) when no usable lease is stored;
        - a :class:`TokenRejected` from the verifier (pinned keys already known only, never the
          network): :class:`TokenExpired` once the lease expired, :class:`DeviceMismatch` for a
          lease of another device, :class:`UntrustedKey` / :class:`TokenInvalid` otherwise.

        On success ``now`` becomes the latest time seen and the lease's facts are returned.
        """
        seconds = self._clock.now().timestamp() if now is None else _timestamp(now)
        with self._lock:
            self._sync()
            self._refuse_rollback(seconds)
            token = self._lease
            if token is None:
                raise NoOfflineLease(
                    f"no offline lease is stored in {self.path} "
                    f"({self._problem or 'none was fetched yet, or it was removed'}); "
                    "connect to the server once to get one"
                )
            verified = self._verified
            if (
                verified is None
                or verified.token != token
                or verified.verifier is not verifier
                or verified.device != device
                or verifier.keys.key(verified.key.kid) is not verified.key
            ):
                verified = self._verify(token, verifier, device)
            if seconds > verified.not_after:
                raise TokenExpired(
                    f"the license lease expired at {verified.info.expires_at.isoformat()}; "
                    "connect to the server to renew it"
                )
            if seconds < verified.not_before:
                raise TokenInvalid(
                    f"the license lease is not valid before {_iso(verified.not_before)}"
                )
            self._see(seconds)
            return verified.info

    def check_clock(self, now: datetime | None = None) -> datetime:
        """Refuse a clock set back, then record ``now`` (default: the store's clock) as seen.

        The same rule as :meth:`check_offline`, for the other documents the agent trusts offline
        (license files): one latest time seen per installation, not one per kind of document.
        Raises :class:`TamperDetected`; returns ``now``.
        """
        when = self._clock.now() if now is None else now
        seconds = _timestamp(when)
        with self._lock:
            self._sync()
            self._refuse_rollback(seconds)
            self._see(seconds)
        return when

    # --- internals (called with the lock held) --------------------------------------------------

    def _refuse_rollback(self, seconds: float) -> None:
        last_seen = self._last_seen
        if last_seen is not None and last_seen - seconds > CLOCK_ROLLBACK_TOLERANCE_SECONDS:
            raise TamperDetected(
                f"the clock reads {_iso(seconds)}, {_duration(last_seen - seconds)} behind "
                f"the latest time already seen ({_iso(last_seen)}); a clock set back by more "
                f"than {CLOCK_ROLLBACK_TOLERANCE_SECONDS // 60} min is treated as tampering. "
                "Correct the system clock, or connect to the server"
            )

    def _verify(self, token: str, verifier: TokenVerifier, device: str) -> _Verified:
        claims = verifier.verify_lease(token, device=device)
        key = verifier.keys.key(claims.kid)
        leeway = verifier.leeway_seconds
        verified = _Verified(
            token=token,
            device=device,
            verifier=verifier,
            key=key,
            not_before=float(claims.claims["nbf"]) - leeway,
            not_after=float(claims.claims["exp"]) + leeway,
            info=claims,
        )
        self._verified = verified
        # The signed issue time is a time seen that nobody can edit out of license.json.
        self._see(claims.issued_at.timestamp())
        return verified

    def _see(self, seconds: float) -> None:
        if self._last_seen is not None and seconds <= self._last_seen:
            return
        self._last_seen = seconds
        persisted = self._persisted_last_seen
        if persisted is None or seconds - persisted >= PERSIST_INTERVAL_SECONDS:
            try:
                self._write()
            except OSError as exc:
                # The time stays in memory; the next check retries the write.
                log.warning("cannot record the time seen in %s: %s", self.path, exc)

    def _write(self) -> None:
        document = {
            "format": LICENSE_FILE_FORMAT,
            "lease": self._lease,
            "last_seen": None if self._last_seen is None else _iso(self._last_seen),
        }
        write_private_file(
            self.path, json.dumps(document, indent=2).encode("utf-8"), prefix=".license-"
        )
        self._persisted_last_seen = self._last_seen
        self._signature = self._stat()

    def _stat(self) -> _StatSignature:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def _sync(self) -> None:
        """Re-read the file if it changed since it was last read or written."""
        signature = self._stat()
        if signature == self._signature:
            return
        self._signature = signature
        state = self._read() if signature is not None else _FileState(None, None, None)
        if state.problem is not None:
            log.warning("%s", state.problem)
        if state.lease != self._lease:
            self._verified = None
        self._lease = state.lease
        self._problem = state.problem
        # Never forget a later time: a file edited (or deleted) to move it back does not count.
        self._persisted_last_seen = state.last_seen
        if state.last_seen is not None and (
            self._last_seen is None or state.last_seen > self._last_seen
        ):
            self._last_seen = state.last_seen

    def _read(self) -> _FileState:
        path = self.path
        try:
            with open(path, "rb") as fh:
                data = fh.read(MAX_LICENSE_FILE_BYTES + 1)
        except OSError as exc:
            return _FileState(None, None, f"{path} cannot be read ({exc}); ignored")
        if len(data) > MAX_LICENSE_FILE_BYTES:
            return _FileState(None, None, f"{path} is too large to be a license file; ignored")
        try:
            document: Any = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return _FileState(None, None, f"{path} is corrupt (not JSON); ignored")
        if not isinstance(document, dict) or document.get("format") != LICENSE_FILE_FORMAT:
            return _FileState(None, None, f"{path} is not a TGFlow license file; ignored")
        lease, last_seen = document.get("lease"), document.get("last_seen")
        if not (lease is None or isinstance(lease, str)):
            return _FileState(None, None, f"{path} holds a malformed lease; ignored")
        seen: float | None = None
        if last_seen is not None:
            try:
                when = datetime.fromisoformat(last_seen) if isinstance(last_seen, str) else None
                seen = _timestamp(when) if when is not None else None
            except (ValueError, OverflowError, OSError):
                seen = None
            if seen is None or not math.isfinite(seen):
                return _FileState(None, None, f"{path} holds a malformed last_seen; ignored")
        return _FileState(lease, seen, None)
