"""Announcements that sessions ended, heard by every worker and every server process.

A service that ends sessions calls :meth:`SessionBus.announce` inside its write transaction. On
commit, this process drops the matching cache entries at once (so the very next request here is
refused), and:

- on PostgreSQL, the announcement is a ``NOTIFY`` issued in the same transaction, so it is
  delivered to every listening process exactly when, and only if, the change commits. Each
  process keeps one connection that ``LISTEN``s on a thread of its own. While that connection is
  down the cache is suspended (every request asks the database), and it is emptied again once the
  connection is back, since announcements made meanwhile are lost;
- on SQLite (one process by design) the local drop is all there is. Should several processes
  share one SQLite file anyway, the cache's TTL still bounds what they may answer from.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from .config import libpq_conninfo
from .services.session_cache import SessionCache

log = logging.getLogger("tgflow.server.sessions")

#: The PostgreSQL channel of the announcements (one database serves one deployment).
CHANNEL = "tgflow_sessions_ended"
_NOTIFY = text("SELECT pg_notify(:channel, :payload)")
#: How long the listener waits for a notification before checking whether to stop.
_POLL_SECONDS = 0.25
_RETRY_SECONDS = (0.1, 0.25, 0.5, 1.0, 2.0)


class SessionBus:
    """In-process only: right for SQLite, and the base of :class:`PostgresSessionBus`."""

    def __init__(self, cache: SessionCache) -> None:
        self.cache = cache

    def announce(self, session: Session, keys: Sequence[str]) -> None:
        """Have ``keys`` dropped everywhere once ``session``'s transaction commits."""
        if not keys:
            return
        dropped = tuple(keys)
        event.listen(session, "after_commit", lambda _s: self.cache.invalidate(dropped), once=True)

    def start(self) -> None:
        """Begin hearing other processes' announcements (a no-op in process)."""

    def stop(self) -> None:
        """Stop hearing them (idempotent)."""

    def wait_listening(self, timeout: float) -> bool:
        """Whether other processes' announcements are heard, waiting up to ``timeout``."""
        return True


class PostgresSessionBus(SessionBus):
    def __init__(self, cache: SessionCache, database_url: str) -> None:
        super().__init__(cache)
        self._conninfo = libpq_conninfo(database_url)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: Set while the listener is connected and LISTENing (tests wait on it).
        self.listening = threading.Event()
        #: The database backend of the listening connection (for operators and tests).
        self.listener_pid: int | None = None
        # Nothing is heard until the listener runs: remember nothing until then.
        cache.suspend()

    def announce(self, session: Session, keys: Sequence[str]) -> None:
        if not keys:
            return
        super().announce(session, keys)
        # One payload per announcement; ids are UUIDs, far below NOTIFY's 8000-byte limit.
        session.execute(_NOTIFY, {"channel": CHANNEL, "payload": " ".join(keys)})

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._listen_forever, name="tgflow-session-bus", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self.listening.clear()
        self.cache.suspend()

    def wait_listening(self, timeout: float) -> bool:
        return self.listening.wait(timeout)

    def _listen_forever(self) -> None:
        import psycopg

        failures = 0
        while not self._stop.is_set():
            try:
                with psycopg.connect(self._conninfo, autocommit=True, connect_timeout=5) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self.listener_pid = conn.info.backend_pid
                    self.cache.resume()
                    self.listening.set()
                    failures = 0
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=_POLL_SECONDS):
                            self.cache.invalidate(note.payload.split())
            except Exception as exc:  # the listener must outlive any hiccup of the database
                log.warning("session announcements unheard; asking the database: %s", exc)
            finally:
                self.listening.clear()
                self.cache.suspend()
            delay = _RETRY_SECONDS[min(failures, len(_RETRY_SECONDS) - 1)]
            failures += 1
            self._stop.wait(delay)


def make_session_bus(database_url: str, ttl: float) -> SessionBus:
    if make_url(database_url).get_backend_name() == "postgresql":
        return PostgresSessionBus(SessionCache(ttl), database_url)
    return SessionBus(SessionCache(ttl))
