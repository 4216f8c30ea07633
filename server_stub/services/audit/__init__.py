"""The backend's one audit log (docs/licensing.md, "Audit log").

Append-only and hash-chained: each entry carries the SHA-256 of the previous entry's canonical
form; checkpoints of the head are signed with the ``license`` key. Every capability writes to it
with :func:`record` inside the transaction of the change it records (:mod:`.chain`); reading,
verifying, searching and exporting go through :class:`AuditLog` (:mod:`.log`).
"""

from __future__ import annotations

from .chain import record
from .log import MAX_PAGE, AuditLog, AuditPage, entry_dict, escape_like, object_under

__all__ = [
    "MAX_PAGE",
    "AuditLog",
    "AuditPage",
    "entry_dict",
    "escape_like",
    "object_under",
    "record",
]
