"""``Idempotency-Key`` on money-moving POSTs, with Stripe's semantics (docs/billing.md,
"Idempotency-Key").

A request with a key first *claims* it: an insert that the table's primary key (scope, key)
lets only one request win, on SQLite (``BEGIN IMMEDIATE``) and on PostgreSQL (``ON CONFLICT DO
NOTHING`` waits for a concurrent claim's commit, then loses to it). The claim is committed on
its own, before the request's work runs in the service's own transaction; the response is then
stored under the key by the claim's holder. So, for a key:

- no row, or a row past ``expires_at`` (24 h): this request claims it and executes;
- a row of other parameters (fingerprint): ``idempotency_conflict``;
- a row ``in_progress`` whose lease runs: ``idempotency_conflict`` (the first is still running);
- a row ``in_progress`` whose lease ran out (its holder crashed between its claim and its
  store): this request claims it again and executes;
- a row ``done``: its stored response, replayed.

A crash between the service's commit and the store leaves the key ``in_progress`` until the
lease ends, then the retry executes again: the work must itself be safe to repeat (the payment
APIs are, by their natural keys). A holder that outlives its lease and finds its claim taken
stores nothing (its token no longer matches).
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Connection, Table, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite

from ..db import transaction, write_connection
from ..errors import IdempotencyConflict
from ..idempotency_models import HttpIdempotency
from .context import ServiceContext

log = logging.getLogger("tgflow.server.idempotency")

IN_PROGRESS = "in_progress"
DONE = "done"
#: Claim attempts before giving up; a retry only happens when the sweeper pruned the row
#: between our insert and our read, so two suffice.
_ATTEMPTS = 3
_TABLE = cast(Table, HttpIdempotency.__table__)


def request_fingerprint(method: str, path: str, query: str, body: bytes) -> str:
    """SHA-256 of what makes two requests "the same parameters" for a key.

    A JSON body counts by its canonical form (sorted keys, no insignificant whitespace), so a
    client that re-serialises its retry is not refused; any other body counts byte for byte.
    The query counts as its sorted pairs.
    """
    try:
        canonical = json.dumps(
            json.loads(body), sort_keys=True, separators=(",", ":"), ensure_ascii=False
        ).encode("utf-8")
    except (ValueError, RecursionError):
        canonical = body
    pairs = sorted(p for p in query.split("&") if p)
    digest = hashlib.sha256()
    for part in (method.upper().encode(), path.encode(), "&".join(pairs).encode()):
        digest.update(len(part).to_bytes(8, "big") + part)
    digest.update(canonical)
    return digest.hexdigest()


@dataclass(frozen=True)
class StoredResponse:
    """A first response as it is stored and replayed."""

    status_code: int
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class Claim:
    """This request holds the key: it executes, then :meth:`IdempotencyService.complete`
    (or :meth:`~IdempotencyService.release`) with the same claim."""

    scope: str
    key: str
    token: str


class IdempotencyService:
    def __init__(self, ctx: ServiceContext) -> None:
        self._ctx = ctx

    def claim(self, scope: str, key: str, fingerprint: str) -> Claim | StoredResponse:
        """Claim ``key`` for this request, or the response to replay; raises
        :class:`IdempotencyConflict` for other parameters or a first request still running."""
        for _ in range(_ATTEMPTS):
            with write_connection(self._ctx.write) as conn:
                outcome = self._claim(conn, scope, key, fingerprint, self._ctx.clock.now())
            if outcome is not None:
                return outcome
        raise IdempotencyConflict("the idempotency key is being reused concurrently; retry")

    def _claim(
        self, conn: Connection, scope: str, key: str, fingerprint: str, now: datetime
    ) -> Claim | StoredResponse | None:
        table = _TABLE
        token = str(uuid.uuid4())
        fresh = self._fresh_values(fingerprint, token, now)
        dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
        # RETURNING, not rowcount: psycopg reports no row count for ON CONFLICT DO NOTHING.
        inserted = conn.execute(
            dialect.insert(table)
            .values(scope=scope, key=key, **fresh)
            .on_conflict_do_nothing(index_elements=["scope", "key"])
            .returning(table.c.token)
        ).first()
        if inserted is not None:
            return Claim(scope, key, token)
        row = conn.execute(
            select(table).where(table.c.scope == scope, table.c.key == key).with_for_update()
        ).one_or_none()
        if row is None:
            return None  # pruned since our insert lost: try again
        expired = row.expires_at <= now
        if not expired and row.fingerprint != fingerprint:
            raise IdempotencyConflict(
                "this idempotency key was already used with other parameters "
                "(another method, path or body); use a new key for a new request"
            )
        if not expired and row.state == IN_PROGRESS and row.lease_until > now:
            raise IdempotencyConflict(
                "a request with this idempotency key is still in progress; retry it later"
            )
        if expired or row.state == IN_PROGRESS:
            # The key is new again (past 24 h), or its holder died: take it over. The row is
            # locked (FOR UPDATE; BEGIN IMMEDIATE on SQLite), so no one else takes it meanwhile.
            conn.execute(
                update(table)
                .where(table.c.scope == scope, table.c.key == key)
                .values(**fresh, status_code=None, headers=None, body=None)
            )
            return Claim(scope, key, token)
        assert row.status_code is not None and row.body is not None
        return StoredResponse(row.status_code, dict(row.headers or {}), bytes(row.body))

    def _fresh_values(self, fingerprint: str, token: str, now: datetime) -> dict[str, Any]:
        settings = self._ctx.settings
        return {
            "fingerprint": fingerprint,
            "state": IN_PROGRESS,
            "token": token,
            "lease_until": now + timedelta(seconds=settings.idempotency_lease_seconds),
            "created_at": now,
            "expires_at": now + timedelta(seconds=settings.idempotency_ttl_seconds),
        }

    def complete(self, claim: Claim, response: StoredResponse) -> bool:
        """Store the first response under the claimed key; ``False`` when the claim was lost
        (the lease ran out and another request took the key): nothing is stored then."""
        table = _TABLE
        with write_connection(self._ctx.write) as conn:
            stored = conn.execute(
                update(table)
                .where(
                    table.c.scope == claim.scope,
                    table.c.key == claim.key,
                    table.c.token == claim.token,
                )
                .values(
                    state=DONE,
                    status_code=response.status_code,
                    headers=response.headers,
                    body=response.body,
                )
                .returning(table.c.token)
            ).first()
        if stored is None:
            log.warning("idempotency claim lost before its response was stored")
            return False
        return True

    def release(self, claim: Claim) -> None:
        """Let the key go without a stored response (the request failed with a 5xx or an
        unexpected error): a retry executes again."""
        table = _TABLE
        with write_connection(self._ctx.write) as conn:
            conn.execute(
                delete(table).where(
                    table.c.scope == claim.scope,
                    table.c.key == claim.key,
                    table.c.token == claim.token,
                )
            )

    def sweep(self) -> int:
        """The sweeper's round: prune keys past their 24 h; returns how many."""
        with transaction(self._ctx.write) as session:
            pruned = session.execute(
                delete(HttpIdempotency).where(HttpIdempotency.expires_at <= self._ctx.clock.now())
            )
        count: int = getattr(pruned, "rowcount", 0) or 0
        if count:
            log.info("pruned expired idempotency keys", extra={"count": count})
        return count
