"""One sweeper for the whole deployment, whatever the number of workers and server processes.

On PostgreSQL the sweeper of a process runs a round only while that process holds a
session-level advisory lock on a connection of its own: the first process to take it sweeps,
the others skip their rounds. Should the sweeping process die or lose its connection, the
database releases the lock with the session and another process takes it at its next round.
(Each sweep is idempotent and claims its rows, so a round run twice during such a hand-over
does no harm; the lease only keeps N processes from doing the same work N times.)

On SQLite (one process by design) there is no one to share with: every round runs.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.engine import make_url

from .config import libpq_conninfo

log = logging.getLogger("tgflow.server.sweeper")

#: The advisory-lock key of the sweeper ("tgfswp"); the migrations use another.
SWEEPER_LOCK_KEY = 0x746766737770


class SweeperLease:
    """Always held: SQLite, or no one else to share the work with."""

    def hold(self) -> bool:
        """Whether this process should run the next round (taking the lease if it is free)."""
        return True

    def release(self) -> None:
        """Give the lease up (idempotent), so that another process takes it at once."""


class PostgresSweeperLease(SweeperLease):
    def __init__(self, database_url: str) -> None:
        self._conninfo = libpq_conninfo(database_url)
        self._conn: Any = None

    def hold(self) -> bool:
        import psycopg

        if self._conn is not None:
            try:
                self._conn.execute("SELECT 1")  # the lock lives exactly as long as the session
                return True
            except psycopg.Error:
                log.warning("sweeper lease lost with its connection; trying to take it again")
                self._close()
        try:
            conn = psycopg.connect(self._conninfo, autocommit=True, connect_timeout=5)
        except psycopg.Error as exc:
            log.warning("sweeper lease unavailable: %s", exc)
            return False
        try:
            row = conn.execute("SELECT pg_try_advisory_lock(%s)", (SWEEPER_LOCK_KEY,)).fetchone()
        except psycopg.Error:
            conn.close()
            return False
        if not (row and row[0]):
            conn.close()  # another process sweeps
            return False
        log.info("this process now runs the sweeper")
        self._conn = conn
        return True

    def release(self) -> None:
        self._close()

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()  # ends the session, and with it the lock
            except Exception:  # closing a broken connection must not fail a shutdown
                log.debug("closing the sweeper lease connection failed", exc_info=True)


def make_sweeper_lease(database_url: str) -> SweeperLease:
    if make_url(database_url).get_backend_name() == "postgresql":
        return PostgresSweeperLease(database_url)
    return SweeperLease()
