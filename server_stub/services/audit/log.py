"""Reading the audit log: verify the chain, search it, export it; sign checkpoints."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError

from agent.protocol import (
    AUDIT_EXPORT_FORMAT,
    AuditVerdict,
    audit_chain_verdict,
    audit_time,
)

from ...db import transaction
from ...errors import ServiceUnavailable, ValidationFailed
from ...models import AuditCheckpoint, AuditEntry
from ...signing import Signer, SignerError
from ..context import ServiceContext
from .chain import head, record
from .checkpoints import CheckpointInvalid, sign_checkpoint, trusted_keys, verify_checkpoint

log = logging.getLogger("tgflow.server.audit")

#: Most entries one search page returns.
MAX_PAGE = 500
_BATCH = 1000


@dataclass(frozen=True)
class AuditPage:
    entries: list[AuditEntry]
    #: Pass as ``cursor`` for the next (older) page; ``None`` on the last page.
    next_cursor: str | None


def entry_dict(entry: AuditEntry) -> dict[str, Any]:
    """An entry as the wire and the export carry it (``at`` in its canonical text)."""
    return {
        "seq": entry.seq,
        "at": audit_time(entry.at),
        "actor": entry.actor,
        "action": entry.action,
        "object": entry.object,
        "details": entry.details,
        "prev_hash": entry.prev_hash,
        "hash": entry.hash,
    }


def escape_like(text: str) -> str:
    """``text`` matched literally by ``LIKE ... ESCAPE '\\'``."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def object_under(column: Any, path: str) -> Any:
    """``column`` is ``path`` or a path below it (``staff/1`` is under ``staff``)."""
    return or_(column == path, column.like(escape_like(path) + "/%", escape="\\"))


class AuditLog:
    def __init__(self, ctx: ServiceContext, signer: Signer) -> None:
        self._ctx = ctx
        #: Signs the checkpoints: the license key file, or the PKCS#11 token when configured.
        self._signer = signer

    # --- writing --------------------------------------------------------------------------------

    def append(self, actor: str, action: str, obj: str, details: dict[str, Any] | None) -> None:
        """Record one entry in a transaction of its own (for actions that change nothing else)."""
        with transaction(self._ctx.write) as session:
            record(session, self._ctx.clock.now(), actor, action, obj, details)

    def checkpoint(self, *, force: bool = True) -> AuditCheckpoint | None:
        """Sign the head; with ``force`` off, only when it is due (the sweeper's call).

        Due: the head moved since the last checkpoint, and that checkpoint is older than the
        interval or the entries since reach the count in the settings.
        """
        settings = self._ctx.settings
        now = self._ctx.clock.now()
        with transaction(self._ctx.write) as session:
            seq, entry_hash = head(session.connection())
            last = session.scalar(
                select(AuditCheckpoint).order_by(AuditCheckpoint.seq.desc()).limit(1)
            )
            if seq == 0 or (last is not None and last.seq >= seq):
                return last
            if not force and last is not None:
                interval = timedelta(seconds=settings.audit_checkpoint_interval_seconds)
                if now - last.signed_at < interval and seq - last.seq < (
                    settings.audit_checkpoint_entries
                ):
                    return None
            try:
                signed = sign_checkpoint(self._signer, settings.issuer, seq, entry_hash, now)
            except SignerError as exc:
                # A token pulled out or failing: the client hears 503, the log says why.
                log.error("audit checkpoint not signed: %s", exc)
                raise ServiceUnavailable("the license signer cannot sign now; try again") from exc
            row = AuditCheckpoint(seq=seq, hash=entry_hash, signed_at=now, jws=signed.jws)
            session.add(row)
            return row

    def checkpoint_due(self) -> None:
        """The sweeper's call: sign a checkpoint if one is due (see :meth:`checkpoint`)."""
        # Read first: most rounds find nothing to sign and need not take the write lock.
        with transaction(self._ctx.read) as session:
            seq, _ = head(session.connection())
            signed = session.scalar(select(func.max(AuditCheckpoint.seq))) or 0
        if seq <= signed:
            return
        # IntegrityError: another worker signed this head at the same moment; it is signed.
        with contextlib.suppress(IntegrityError):
            self.checkpoint(force=False)

    # --- verifying ------------------------------------------------------------------------------

    def verify(self) -> AuditVerdict:
        """Walk the whole log and its checkpoints; the verdict names the first broken entry,
        and the newest checkpoint (entries after it are not yet covered by a signature)."""
        settings = self._ctx.settings
        trusted = trusted_keys(self._ctx.keys, self._signer)
        with transaction(self._ctx.snapshot) as session:
            signed: dict[int, str] = {}
            signed_at: dict[int, datetime] = {}
            for cp in session.scalars(select(AuditCheckpoint).order_by(AuditCheckpoint.seq)):
                try:
                    claims = verify_checkpoint(trusted, settings.issuer, cp.jws)
                except CheckpointInvalid as exc:
                    return AuditVerdict(
                        0, None, None, 0, broken_seq=cp.seq, reason=f"checkpoint {cp.seq}: {exc}"
                    )
                if (claims.seq, claims.hash) != (cp.seq, cp.hash):
                    return AuditVerdict(
                        0,
                        None,
                        None,
                        0,
                        broken_seq=cp.seq,
                        reason=f"checkpoint {cp.seq} was altered: it differs from its signature",
                    )
                signed[claims.seq] = claims.hash
                signed_at[claims.seq] = claims.signed_at
            rows = session.scalars(
                select(AuditEntry).order_by(AuditEntry.seq).execution_options(yield_per=_BATCH)
            )
            verdict = audit_chain_verdict((entry_dict(row) for row in rows), signed)
        return verdict.with_last_checkpoint(signed_at)

    def checkpoint_overdue(self, verdict: AuditVerdict) -> bool:
        """Whether entries have waited for a checkpoint longer than the sweeper lets them.

        The sweeper signs within the checkpoint interval plus one sweep; two sweeps of slack.
        Overdue means no sweeper has run (server stopped, lease lost, signer failing): the
        window in which a cut from the end goes unseen has grown past what the settings promise.
        """
        if not verdict.ok or verdict.unanchored == 0:
            return False
        if verdict.last_checkpoint_at is None:
            return True
        settings = self._ctx.settings
        allowed = timedelta(
            seconds=settings.audit_checkpoint_interval_seconds + 2 * settings.sweep_interval_seconds
        )
        return self._ctx.clock.now() - verdict.last_checkpoint_at > allowed

    # --- searching ------------------------------------------------------------------------------

    def search(
        self,
        *,
        actor: str | None = None,
        obj: str | None = None,
        action: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        cursor: str | None = None,
        limit: int = 100,
    ) -> AuditPage:
        """Entries newest first, filtered; ``obj`` matches the path and everything below it."""
        query = select(AuditEntry).order_by(AuditEntry.seq.desc())
        if actor is not None:
            query = query.where(AuditEntry.actor == actor)
        if obj is not None:
            query = query.where(object_under(AuditEntry.object, obj.rstrip("/")))
        if action is not None:
            query = query.where(AuditEntry.action == action)
        if since is not None:
            query = query.where(AuditEntry.at >= since)
        if until is not None:
            query = query.where(AuditEntry.at < until)
        if cursor is not None:
            if not cursor.isdigit() or len(cursor) > 18:
                raise ValidationFailed("cursor: not a cursor this endpoint returned")
            query = query.where(AuditEntry.seq < int(cursor))
        limit = max(1, min(limit, MAX_PAGE))
        with transaction(self._ctx.read) as session:
            rows = list(session.scalars(query.limit(limit + 1)))
        more = len(rows) > limit
        rows = rows[:limit]
        return AuditPage(rows, str(rows[-1].seq) if more and rows else None)

    def count(self) -> int:
        with transaction(self._ctx.read) as session:
            return session.scalar(select(func.count()).select_from(AuditEntry)) or 0

    # --- exporting ------------------------------------------------------------------------------

    def export(self, *, from_seq: int = 1) -> Iterator[str]:
        """The log as JSON lines: a header, the entries from ``from_seq``, the checkpoints.

        A checkpoint of the head is signed first, so every exported entry is covered by a
        signature. The lines are what ``agent.audit_verify`` checks offline.
        """
        # Signed now, not when the first line is asked for: a signer that fails is an error
        # before a response starts, not a stream cut after its headers.
        self.checkpoint(force=True)
        return self._export_lines(from_seq)

    def _export_lines(self, from_seq: int) -> Iterator[str]:
        with transaction(self._ctx.snapshot) as session:
            top = session.scalar(select(func.max(AuditCheckpoint.seq))) or 0
            yield _line(
                {
                    "type": "header",
                    "format": AUDIT_EXPORT_FORMAT,
                    "issuer": self._ctx.settings.issuer,
                    "exported_at": audit_time(self._ctx.clock.now()),
                    "from_seq": from_seq,
                    "to_seq": top,
                }
            )
            rows = session.scalars(
                select(AuditEntry)
                .where(AuditEntry.seq >= from_seq, AuditEntry.seq <= top)
                .order_by(AuditEntry.seq)
                .execution_options(yield_per=_BATCH)
            )
            for row in rows:
                yield _line({"type": "entry", **entry_dict(row)})
            for cp in session.scalars(
                select(AuditCheckpoint)
                .where(AuditCheckpoint.seq >= from_seq, AuditCheckpoint.seq <= top)
                .order_by(AuditCheckpoint.seq)
            ):
                yield _line({"type": "checkpoint", "seq": cp.seq, "hash": cp.hash, "jws": cp.jws})


def _line(value: dict[str, Any]) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n"
