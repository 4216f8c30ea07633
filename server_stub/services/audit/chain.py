"""Appending to the one audit log: an entry joins the chain when its transaction commits.

A service records an entry in its own session (:func:`record`); the entries are written by the
session's ``before_commit`` hook, at the very end of the transaction. There the log's lock is taken
(an advisory transaction lock on PostgreSQL; SQLite's ``BEGIN IMMEDIATE`` already holds the one
write lock), the head is read and the entries are chained onto it. Taking the lock last, and
holding it only to commit, keeps every writer in one order (no deadlock with the row locks a
transaction took before) and keeps the chain single under any concurrency. An entry commits, or
rolls back, with the change it records.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, cast

from sqlalchemy import Connection, Table, event, select, text
from sqlalchemy.orm import Session

from agent.protocol import AUDIT_GENESIS_HASH, audit_entry_hash, audit_time

from ...models import AuditEntry

#: PostgreSQL advisory-lock key of the audit log (``tgaudit``), apart from the migrations' key.
AUDIT_LOCK_KEY = 0x7467617564697400
_PENDING = "tgflow_audit_pending"


@dataclass(frozen=True)
class PendingEntry:
    at: datetime
    actor: str
    action: str
    object: str
    details: dict[str, Any]


def record(
    session: Session,
    at: datetime,
    actor: str,
    action: str,
    obj: str,
    details: dict[str, Any] | None = None,
) -> None:
    """Add an entry to the log when ``session`` commits (nothing if it rolls back)."""
    session.info.setdefault(_PENDING, []).append(
        PendingEntry(at, actor, action, obj, dict(details or {}))
    )


# Built once: every audited request runs them, and building a statement costs more than running it.
_HEAD: Final = select(AuditEntry.seq, AuditEntry.hash).order_by(AuditEntry.seq.desc()).limit(1)
_INSERT: Final = cast(Table, AuditEntry.__table__).insert()
_LOCK: Final = text("SELECT pg_advisory_xact_lock(:k)")


def head(conn: Connection) -> tuple[int, str]:
    """The last entry's ``seq`` and ``hash`` (0 and the genesis hash for an empty log)."""
    row = conn.execute(_HEAD).first()
    return (int(row[0]), str(row[1])) if row is not None else (0, AUDIT_GENESIS_HASH)


def _append(conn: Connection, pending: list[PendingEntry]) -> None:
    if conn.dialect.name == "postgresql":
        conn.execute(_LOCK, {"k": AUDIT_LOCK_KEY})
    seq, prev = head(conn)
    rows = []
    for item in pending:
        seq += 1
        entry = {
            "seq": seq,
            "at": audit_time(item.at),
            "actor": item.actor,
            "action": item.action,
            "object": item.object,
            "details": item.details,
            "prev_hash": prev,
        }
        prev = audit_entry_hash(entry)
        rows.append({**entry, "at": item.at, "hash": prev})
    conn.execute(_INSERT, rows)


@event.listens_for(Session, "before_commit")
def _write_pending(session: Session) -> None:
    pending: list[PendingEntry] | None = session.info.pop(_PENDING, None)
    if pending:
        _append(session.connection(), pending)


@event.listens_for(Session, "after_soft_rollback")
def _forget_pending(session: Session, _previous: Any) -> None:
    session.info.pop(_PENDING, None)
