"""Engines, sessions and transactions for SQLite (WAL, ``BEGIN IMMEDIATE``) and PostgreSQL."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger("tgflow.server.db")

#: PostgreSQL advisory-lock key that serialises migrations between workers.
_MIGRATION_LOCK_KEY = 0x7467666C6F77
READ_ONLY_OPTION = "tgflow_read_only"
_WRITE_LOCK = "tgflow_write_lock"
_AUTOCOMMIT = "tgflow_autocommit_engine"
#: Connections kept per worker: one per thread of the request thread pool (AnyIO's 40).
POOL_SIZE = 40
POOL_OVERFLOW = 10


def make_engine(url: str) -> Engine:
    """Create the engine; SQLite gets WAL, a busy timeout and write-locking transactions."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            # As many connections as the request thread pool has threads: no churn under load.
            pool_size=POOL_SIZE,
            max_overflow=POOL_OVERFLOW,
        )
        _configure_sqlite(engine)
        return engine
    # Sized to the concurrency like SQLite's: the thread pool (40 threads) plus the event loop.
    # A smaller pool than that closes its overflow connections after each burst and opens new
    # backends under load (hundreds a second, each a fork on the database host).
    # No pre-ping: it is a round trip on every checkout. After a database restart the first
    # request on a dead connection fails (503 service_unavailable) and SQLAlchemy then drops
    # every pooled connection of that age, so the next requests reconnect.
    return create_engine(url, pool_size=POOL_SIZE, max_overflow=POOL_OVERFLOW)


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # The driver's own transaction handling is turned off so that we can open every
        # transaction with BEGIN IMMEDIATE: the write lock is taken up front, so two
        # read-then-write transactions can never both read the old quota.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        read_only = conn.get_execution_options().get(READ_ONLY_OPTION, False)
        # Straight to the driver: through exec_driver_sql, BEGIN cost as much as a query.
        conn.connection.dbapi_connection.execute("BEGIN" if read_only else "BEGIN IMMEDIATE")


def make_sessionmaker(
    engine: Engine, *, read_only: bool = False, snapshot: bool = False
) -> sessionmaker[Session]:
    """Sessions for writing (``BEGIN IMMEDIATE`` on SQLite) or for reading only.

    ``snapshot`` (with ``read_only``): one consistent view across all the statements of the
    transaction, for a reader that walks a whole table in batches (the audit log's verify and
    export): REPEATABLE READ on PostgreSQL, where a batched read also needs a real transaction
    for its server-side cursor; a deferred ``BEGIN`` is already a snapshot on SQLite (WAL).
    """
    options: dict[str, Any] = {READ_ONLY_OPTION: True}
    if is_postgres(engine) and snapshot:
        options["isolation_level"] = "REPEATABLE READ"
    elif is_postgres(engine):
        # READ COMMITTED gives each statement its own snapshot whether or not a transaction is
        # open, so reads lose nothing in autocommit and save the BEGIN and COMMIT round trips.
        options["isolation_level"] = "AUTOCOMMIT"
    bind = engine.execution_options(**options) if read_only else engine
    info: dict[str, Any] = {}
    if not read_only and is_postgres(engine):
        # For one_statement(): built once, as an engine with options costs a copy to build.
        info[_AUTOCOMMIT] = engine.execution_options(isolation_level="AUTOCOMMIT")
    if not read_only and engine.dialect.name == "sqlite":
        # SQLite admits one writer; its busy handler lets waiting writers poll with sleeps of
        # up to 100 ms, which leaves the lock idle and makes latency unfair. Queueing this
        # process's writers on a lock first hands the database lock over at once. The database
        # still enforces the exclusion (BEGIN IMMEDIATE) between processes.
        info[_WRITE_LOCK] = threading.RLock()
    return sessionmaker(bind, expire_on_commit=False, autoflush=False, info=info)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any exception."""
    lock = factory.kw.get("info", {}).get(_WRITE_LOCK)
    with lock or nullcontext(), factory() as session, session.begin():
        yield session


@contextmanager
def write_connection(factory: sessionmaker[Session]) -> Iterator[Connection]:
    """A Core connection in a write transaction (``BEGIN IMMEDIATE`` on SQLite) of ``factory``.

    The hot paths run a few plain statements: a Core connection skips the ORM's unit of work.
    """
    lock = factory.kw.get("info", {}).get(_WRITE_LOCK)
    engine: Engine = factory.kw["bind"]
    with lock or nullcontext(), engine.begin() as conn:
        yield conn


@contextmanager
def one_statement(factory: sessionmaker[Session]) -> Iterator[Connection]:
    """A Core connection of the write ``factory`` for ONE writing statement, committed when the
    statement completes.

    On PostgreSQL the connection is in autocommit: a single statement is a transaction of its
    own, committed (its WAL flushed, as any commit) before ``execute`` returns, and the BEGIN and
    COMMIT round trips are saved. Two statements on it would be two transactions: use
    :func:`write_connection` for more than one. On SQLite it is :func:`write_connection`'s
    transaction (``BEGIN IMMEDIATE`` after this process's writer lock).
    """
    autocommit: Engine | None = factory.kw.get("info", {}).get(_AUTOCOMMIT)
    if autocommit is None:
        with write_connection(factory) as conn:
            yield conn
        return
    with autocommit.connect() as conn:
        yield conn


@contextmanager
def read_connection(factory: sessionmaker[Session]) -> Iterator[Connection]:
    """A Core connection in a read transaction of the read-only ``factory``."""
    engine: Engine = factory.kw["bind"]
    with engine.begin() as conn:
        yield conn


def is_postgres(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"


def check_connection(engine: Engine) -> None:
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))


def head_revision() -> str:
    """The newest migration's revision. Revisions are numbered like their files (``0018_….py``
    is revision ``0018``) and form one line; tests/server/test_migration_head.py holds both
    against Alembic's own reading of the scripts."""
    versions = Path(__file__).with_name("migrations") / "versions"
    return max(p.name.split("_", 1)[0] for p in versions.glob("[0-9][0-9][0-9][0-9]_*.py"))


def at_head(engine: Engine) -> bool:
    """Whether the schema is already at :func:`head_revision`."""
    with engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return False
        stored = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    return stored == [head_revision()]


def upgrade(engine: Engine) -> None:
    """Bring the schema to the newest Alembic revision (safe to call from several workers)."""
    if at_head(engine):
        # The usual start: nothing to do, and Alembic is not even imported. It would stay in
        # every worker's memory for good (about 14 MB with its run, a tenth of the RSS target).
        return
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", "server_stub:migrations")
    with engine.begin() as conn:
        if is_postgres(engine):
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK_KEY})
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
