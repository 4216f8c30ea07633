"""A local SQLite file whose every write is on disk before the call returns.

Used by the usage journal and by the desktop's own stores: WAL mode, ``synchronous=FULL`` (a
transaction is fsynced before ``COMMIT`` returns, so it survives a crash or a power cut), foreign
keys on, and one ``BEGIN IMMEDIATE`` transaction per write under a lock shared by the threads of
this process.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class DurableSQLite:
    """The connection to one SQLite file and the lock that serialises its users."""

    def __init__(self, path: Path | str) -> None:
        """Open (creating the file and its directory if needed) the database at ``path``."""
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.lock = threading.Lock()
        self.connection = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=30
        )
        self.connection.execute("PRAGMA journal_mode=WAL")
        self.connection.execute("PRAGMA synchronous=FULL")
        self.connection.execute("PRAGMA foreign_keys=ON")

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One committed transaction: rolled back if the block raises, durable when it returns."""
        with self.lock:
            self.connection.execute("BEGIN IMMEDIATE")
            try:
                yield self.connection
            except BaseException:
                self.connection.execute("ROLLBACK")
                raise
            self.connection.execute("COMMIT")

    def close(self) -> None:
        """Close the connection (what was committed stays committed)."""
        with self.lock:
            self.connection.close()
