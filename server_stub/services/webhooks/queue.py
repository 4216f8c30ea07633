"""The inbox as a durable queue: claiming due events, recording what applying them did.

A claim is a short write transaction: ``SELECT … FOR UPDATE SKIP LOCKED`` on PostgreSQL (two
workers never claim one row; neither waits for the other's rows), ``BEGIN IMMEDIATE`` on SQLite
(the one writer). It bumps ``attempts`` (the lease's token), names the worker and moves
``next_attempt_at`` one lease ahead: until then no one else claims the row. The apply runs
outside any inbox transaction; its outcome is recorded in another short one. A worker that dies
mid-apply leaves the row pending; when the lease ends it is due again and any worker reclaims it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from random import Random
from typing import Any, Final

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from ...db import one_statement, transaction
from ...webhook_models import WEBHOOK_PENDING, WebhookEvent
from ..audit.chain import record
from ..context import ServiceContext

log = logging.getLogger("tgflow.server.webhooks")

#: The first retry's wait; each further one is ``RETRY_FACTOR`` times longer, up to
#: ``MAX_RETRY``: 30 s, 2 min, 8 min, 32 min, ~2 h 8 min, 6 h, 6 h (≈ 15 h over 8 attempts).
FIRST_RETRY: Final = timedelta(seconds=30)
RETRY_FACTOR: Final = 4
MAX_RETRY: Final = timedelta(hours=6)
#: Each wait is spread by ±25 % so that events failing together do not retry together.
JITTER: Final = 0.25
#: The audit actor of what the worker does on its own.
WORKER_ACTOR: Final = "system:webhooks"
_MAX_ERROR: Final = 500

#: A pending row made done, in one statement (the status and time bound at execution): no
#: SELECT … FOR UPDATE and no ORM flush, which cost more than the update.
_MARK_DONE: Final = update(WebhookEvent).where(
    WebhookEvent.seq == bindparam("done_seq"), WebhookEvent.status.in_(WEBHOOK_PENDING)
)


def retry_delay(attempts: int, rng: Random) -> timedelta:
    """The wait after the ``attempts``-th failed attempt (1-based), jittered."""
    base = min(FIRST_RETRY * RETRY_FACTOR ** min(max(attempts - 1, 0), 12), MAX_RETRY)
    return base * (1 - JITTER + 2 * JITTER * rng.random())


@dataclass(frozen=True)
class Claim:
    """An event a worker holds for one attempt."""

    seq: int
    provider: str
    event_id: str
    payload: dict[str, Any]
    event_at: datetime | None
    #: The row's ``attempts`` after this claim: the lease's token.
    attempt: int


@dataclass(frozen=True)
class Outcome:
    """What recording an attempt did to the row (for the metrics and the caller)."""

    status: str
    #: False when the row had moved on (another worker's claim, an operator) and was left as is.
    recorded: bool


def claim_batch(
    ctx: ServiceContext, worker: str, limit: int, max_attempts: int
) -> tuple[list[Claim], list[str]]:
    """Claim up to ``limit`` due events, oldest received first. Returns the claims and the
    providers of rows dead-lettered on the way (a row whose every attempt lost its worker)."""
    now = ctx.clock.now()
    lease = timedelta(seconds=ctx.settings.webhook_lease_seconds)
    claims: list[Claim] = []
    dead: list[str] = []
    with transaction(ctx.write) as session:
        rows = session.scalars(
            select(WebhookEvent)
            .where(
                WebhookEvent.status.in_(WEBHOOK_PENDING),
                WebhookEvent.next_attempt_at <= now,
            )
            .order_by(WebhookEvent.seq)
            .limit(limit)
            .with_for_update(skip_locked=True)
        ).all()
        for row in rows:
            if row.attempts >= max_attempts:
                # Every attempt so far was lost with its worker (a crash, a kill, an apply that
                # outlived the lease): the event itself may be what kills them.
                lost = f"its worker was lost on all {row.attempts} attempts"
                _dead_letter(session, row, now, lost)
                dead.append(row.provider)
                continue
            row.attempts += 1
            row.claimed_by = worker[:100]
            row.claimed_until = row.next_attempt_at = now + lease
            claims.append(
                Claim(row.seq, row.provider, row.event_id, row.payload, row.event_at, row.attempts)
            )
    return claims, dead


def record_done(ctx: ServiceContext, claim: Claim, applied: bool) -> Outcome:
    """The apply returned (and so committed): the row is done, whoever holds it now."""
    status = "applied" if applied else "ignored"
    # Recorded even when the lease ran out and another worker claimed the row meanwhile: this
    # apply committed, so the event is applied; the other worker's apply is then the applier's
    # idempotent repeat, and its record finds the row done.
    values = {
        "done_seq": claim.seq,
        "status": status,
        "applied_at": ctx.clock.now(),
        "next_attempt_at": None,
        "claimed_until": None,
        "claimed_by": None,
        "last_error": None,
    }
    with one_statement(ctx.write) as conn:
        recorded = conn.execute(_MARK_DONE, values).rowcount == 1
    if recorded:
        return Outcome(status, recorded=True)
    with transaction(ctx.read) as session:
        current = session.scalar(select(WebhookEvent.status).where(WebhookEvent.seq == claim.seq))
    return Outcome(current or "gone", recorded=False)


def record_failure(
    ctx: ServiceContext, claim: Claim, error: str, max_attempts: int, rng: Random
) -> Outcome:
    """The apply raised: retry after the backoff, or dead-letter after the last attempt."""
    now = ctx.clock.now()
    with transaction(ctx.write) as session:
        row = _locked(session, claim.seq)
        if row is None or row.status not in WEBHOOK_PENDING or row.attempts != claim.attempt:
            # Another worker claimed it since (this one outlived its lease): its attempt decides.
            return Outcome(row.status if row is not None else "gone", recorded=False)
        if row.attempts >= max_attempts:
            _dead_letter(session, row, now, error)
            return Outcome("dead", recorded=True)
        row.status = "failed"
        row.last_error = error[:_MAX_ERROR]
        row.next_attempt_at = now + retry_delay(row.attempts, rng)
        row.claimed_until = row.claimed_by = None
        return Outcome("failed", recorded=True)


def _dead_letter(session: Session, row: WebhookEvent, now: datetime, error: str) -> None:
    row.status = "dead"
    row.last_error = error[:_MAX_ERROR]
    row.next_attempt_at = row.claimed_until = row.claimed_by = None
    record(
        session,
        now,
        WORKER_ACTOR,
        "webhook.dead",
        f"webhooks/{row.seq}",
        {
            "provider": row.provider,
            "event_id": row.event_id,
            "attempts": row.attempts,
            "last_error": row.last_error,
        },
    )
    log.warning(
        "webhook dead-lettered",
        extra={"seq": row.seq, "provider": row.provider, "event_id": row.event_id},
    )


def _locked(session: Session, seq: int) -> WebhookEvent | None:
    return session.scalar(
        select(WebhookEvent)
        .where(WebhookEvent.seq == seq)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
