"""Which sessions are live, remembered in process so that authenticating costs no query.

A hit is a dictionary read: no I/O, no lock. A miss reads the session, its device and its user in
one statement and remembers the answer for a short time (``ttl``). Logout, device removal and
refresh-family revocation announce what they ended (:mod:`server_stub.session_bus`); every
process then drops the matching entries. The TTL is the backstop: should an announcement be lost,
or the database be edited by hand, no process answers from an entry older than ``ttl``.

Only live sessions are remembered; an ended one is looked up again each time (it is refused
anyway, and rarely asked about). The TTL is measured on a monotonic clock on purpose: it bounds
how stale a copy may be, which is not a business time, and the business clock (the injected
``Clock``) is frozen in tests and may be set back by an operator.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

#: Prefixes of the keys an announcement carries.
SESSION_PREFIX = "s:"
DEVICE_PREFIX = "d:"


def session_key(session_id: str) -> str:
    return SESSION_PREFIX + session_id


def device_key(device_id: str) -> str:
    return DEVICE_PREFIX + device_id


@dataclass(frozen=True, slots=True)
class LiveSession:
    """A session found live: not ended, its device not removed, its user not disabled."""

    session_id: str
    user_id: str
    device_id: str
    fingerprint: str


class SessionCache:
    def __init__(
        self,
        ttl: float,
        *,
        max_entries: int = 65536,
        enabled: bool = True,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl = ttl
        self._max = max_entries
        self._monotonic = monotonic
        self._entries: dict[str, tuple[LiveSession, float]] = {}
        self._lock = threading.Lock()
        # Bumped by every invalidation: a miss that read the database before an invalidation
        # must not store what it read after it (it may have read the session still live).
        self._generation = 0
        self._enabled = enabled and ttl > 0

    @property
    def generation(self) -> int:
        """Read before the database is; hand it back to :meth:`put`."""
        return self._generation

    def get(self, session_id: str) -> LiveSession | None:
        # A plain dict read is atomic under the GIL; writers replace entries, never mutate them.
        entry = self._entries.get(session_id)
        if entry is None or self._monotonic() >= entry[1]:
            return None
        return entry[0]

    def put(self, live: LiveSession, generation: int) -> None:
        with self._lock:
            if not self._enabled or generation != self._generation:
                return
            if len(self._entries) >= self._max and live.session_id not in self._entries:
                # The oldest insertion goes first; with a TTL of a second it is long stale.
                del self._entries[next(iter(self._entries))]
            self._entries[live.session_id] = (live, self._monotonic() + self._ttl)

    def invalidate(self, keys: Iterable[str]) -> None:
        """Drop the entries of the sessions and devices named by ``keys`` (unknown ones too)."""
        sessions: set[str] = set()
        devices: set[str] = set()
        for key in keys:
            if key.startswith(SESSION_PREFIX):
                sessions.add(key[len(SESSION_PREFIX) :])
            elif key.startswith(DEVICE_PREFIX):
                devices.add(key[len(DEVICE_PREFIX) :])
        with self._lock:
            self._generation += 1
            for session_id in sessions:
                self._entries.pop(session_id, None)
            if devices:
                # Device removal is rare; a scan of a bounded dict beats keeping a second index.
                for session_id, (live, _) in list(self._entries.items()):
                    if live.device_id in devices:
                        del self._entries[session_id]

    def suspend(self) -> None:
        """Forget everything and remember nothing: announcements may be missed from now on."""
        with self._lock:
            self._enabled = False
            self._generation += 1
            self._entries.clear()

    def resume(self) -> None:
        """Remember again: announcements are heard again (those missed meanwhile are moot)."""
        with self._lock:
            self._generation += 1
            self._entries.clear()
            self._enabled = self._ttl > 0

    def __len__(self) -> int:
        return len(self._entries)
