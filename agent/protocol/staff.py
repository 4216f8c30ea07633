"""Staff of the backend (seed 003's portal) and the one hash-chained audit log: the constants,
the canonical form of an entry and the chain walk, shared by the server and the offline verifier
(docs/licensing.md)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Final

# --- staff and audit (docs/licensing.md) ----------------------------------------------------------
#
# Operators of the backend (seed 003's portal staff) and the one hash-chained audit log.

#: The staff access token: RS256 with the ``auth`` key, its own ``aud`` and ``typ`` claim.
STAFF_TOKEN_ALG: Final = "RS256"
STAFF_TOKEN_AUDIENCE: Final = "tgflow-staff"
STAFF_TOKEN_TYP: Final = "staff-access"
STAFF_TOKEN_TTL_SECONDS: Final = 15 * 60
#: An audit checkpoint: ES256 JWS with the ``license`` key, ``kid`` and this ``typ`` in its header.
AUDIT_CHECKPOINT_ALG: Final = "ES256"
AUDIT_CHECKPOINT_TYP: Final = "audit-checkpoint"
#: ``prev_hash`` of the first entry of the log.
AUDIT_GENESIS_HASH: Final = "0" * 64
#: Format name of the first line of an audit export (JSON lines).
AUDIT_EXPORT_FORMAT: Final = "tgflow-audit-export/1"
#: The members of an audit entry that its hash covers, in the canonical form.
AUDIT_ENTRY_FIELDS: Final = ("seq", "at", "actor", "action", "object", "details", "prev_hash")


def audit_time(value: datetime) -> str:
    """An audit entry's ``at`` in its one canonical text: UTC, microseconds, ``Z``."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def audit_canonical(entry: Mapping[str, Any]) -> bytes:
    """The canonical form of an audit entry: the bytes its hash is taken of.

    JSON of exactly :data:`AUDIT_ENTRY_FIELDS`, keys sorted, no whitespace, UTF-8 (non-ASCII kept
    as is); ``at`` is the text of :func:`audit_time`. ``details`` holds only JSON objects,
    arrays, strings, integers, booleans and null (no floats: their text is not canonical).
    """
    body = {name: entry[name] for name in AUDIT_ENTRY_FIELDS}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.encode("utf-8")


def audit_entry_hash(entry: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of the canonical form; the next entry's ``prev_hash``."""
    return hashlib.sha256(audit_canonical(entry)).hexdigest()


@dataclass(frozen=True)
class AuditVerdict:
    """What a walk over an audit chain found: the first break, or that it holds."""

    entries: int
    head_seq: int | None
    head_hash: str | None
    #: Entries after the last checkpoint: not covered by a signature yet.
    unanchored: int
    broken_seq: int | None = None
    reason: str | None = None
    #: The newest signed checkpoint and when it was signed (its ``iat``): entries after it are
    #: the ``unanchored`` ones, which a cut from the end of the log would remove unseen.
    last_checkpoint_seq: int | None = None
    last_checkpoint_at: datetime | None = None

    @property
    def ok(self) -> bool:
        return self.reason is None

    def with_last_checkpoint(self, signed_at: Mapping[int, datetime]) -> AuditVerdict:
        """This verdict naming the newest of the checkpoints ``signed_at`` (``seq`` → time)."""
        if not signed_at:
            return self
        last = max(signed_at)
        return replace(self, last_checkpoint_seq=last, last_checkpoint_at=signed_at[last])


def audit_chain_verdict(
    entries: Iterable[Mapping[str, Any]],
    checkpoints: Mapping[int, str],
    *,
    prev_hash: str = AUDIT_GENESIS_HASH,
    first_seq: int | None = 1,
) -> AuditVerdict:
    """Walk ``entries`` in ``seq`` order and report the first break of the chain.

    ``checkpoints`` maps a checkpoint's ``seq`` to the ``hash`` it signed (signatures already
    checked by the caller). An edited entry no longer hashes to its ``hash``; a deleted one
    leaves a gap in ``seq`` (or, at the tail, a checkpoint beyond the last entry); entries moved
    to other places no longer hash to their ``hash``, or no longer link by ``prev_hash``.
    ``first_seq`` is ``None`` for an export that starts mid-log: its first ``prev_hash`` is then
    taken as given and the signed checkpoints anchor it.
    """
    count, seq, last_checkpoint = 0, None, 0
    expected = first_seq
    prev: str | None = prev_hash if first_seq == 1 else None

    def broken(at: int, reason: str) -> AuditVerdict:
        return AuditVerdict(count, seq, prev, 0, broken_seq=at, reason=reason)

    for entry in entries:
        try:
            current = int(entry["seq"])
            stated = str(entry["hash"])
            computed = audit_entry_hash(entry)
        except (KeyError, TypeError, ValueError):
            return broken((seq or 0) + 1, f"the entry after {seq or 'the start'} is malformed")
        if expected is not None and current != expected:
            if current > expected:
                return broken(expected, f"entry {expected} is missing (the next is {current})")
            return broken(current, f"entry {current} is out of order (expected {expected})")
        if stated != computed:
            return broken(current, f"entry {current} was altered: its hash does not match it")
        if prev is not None and entry["prev_hash"] != prev:
            return broken(
                current,
                f"entry {current} does not follow entry {current - 1}: "
                "an entry was altered, removed or moved",
            )
        signed = checkpoints.get(current)
        if signed is not None:
            if signed != computed:
                return broken(current, f"entry {current} differs from its signed checkpoint")
            last_checkpoint = current
        count, seq, prev, expected = count + 1, current, computed, current + 1
    beyond = [at for at in checkpoints if seq is None or at > seq]
    if beyond:
        missing = (seq or 0) + 1
        return broken(
            missing, f"entries {missing}..{max(beyond)} are missing: a checkpoint signed them"
        )
    unanchored = count if last_checkpoint == 0 else (seq or 0) - last_checkpoint
    return AuditVerdict(count, seq, prev, unanchored)
