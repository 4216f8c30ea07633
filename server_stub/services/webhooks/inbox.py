"""The webhook inbox's facade: receiving (verify, dedupe, store), the worker's round (claim,
apply, record), the operator's list and redrive, and the sweeper's prune.

docs/billing.md, "Webhooks: one inbox", states the guarantees; queue.py holds the claim rules.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from random import Random
from typing import Any, Final

from sqlalchemy import Insert, delete, func, select
from sqlalchemy.dialects import postgresql, sqlite

from ...db import one_statement, transaction
from ...errors import DomainError, Forbidden, NotFound, TokenInvalid, ValidationFailed
from ...webhook_models import WEBHOOK_PENDING, WEBHOOK_PROVIDERS, WebhookEvent
from ..audit.chain import record
from ..billing.contract import ProviderName
from ..context import ServiceContext
from . import queue
from .intake import Incoming, read_cloudpayments, read_stripe
from .ports import CheckCode, CloudPaymentsKind, EventApplier, InvoiceChecker, NoChecker

log = logging.getLogger("tgflow.server.webhooks")

#: Events one worker claims at once (each is applied in turn within the one lease).
BATCH_SIZE: Final = 10
#: Rows one prune deletes at most, so that a sweep round stays short.
PRUNE_LIMIT: Final = 1000
#: While a backlog is worked off, the queue gauges are refreshed at most this often (seconds).
GAUGE_INTERVAL_S: Final = 1.0


@dataclass(frozen=True)
class Received:
    """What a webhook delivery did: stored anew, or recognised as a duplicate."""

    seq: int | None
    duplicate: bool


@dataclass(frozen=True)
class CloudPaymentsReply:
    code: CheckCode
    received: Received


def _rejection(exc: DomainError) -> str:
    if isinstance(exc, Forbidden):
        return "unconfigured"
    if isinstance(exc, TokenInvalid):
        return "signature"
    return "malformed" if isinstance(exc, ValidationFailed) else "other"


def _insert_new(dialect: str) -> Insert:
    """``INSERT … ON CONFLICT (provider, event_id) DO NOTHING RETURNING seq``, the row's values
    bound at execution.

    Built once per inbox on the Core table: building it per delivery from a dict of values (the
    ORM's ``values()``, coercion and cache key of every column) cost more than the insert.
    """
    table = WebhookEvent.__table__
    key = [table.c.provider, table.c.event_id]
    insert = (postgresql if dialect == "postgresql" else sqlite).insert(table)
    return insert.on_conflict_do_nothing(index_elements=key).returning(table.c.seq)


def default_worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class WebhookInbox:
    """``applier`` None: events are stored and wait (no worker runs) until billing is wired;
    ``checker`` None: every CloudPayments Check is refused as an unknown order."""

    def __init__(
        self,
        ctx: ServiceContext,
        *,
        applier: EventApplier | None = None,
        checker: InvoiceChecker | None = None,
        rng: Random | None = None,
        worker: str | None = None,
    ) -> None:
        self._ctx = ctx
        self.applier = applier
        self._checker: InvoiceChecker = checker or NoChecker()
        self._rng = rng or Random()  # noqa: S311 (jitter, not a secret)
        self.worker = worker or default_worker_name()
        self._insert = _insert_new(ctx.engine.dialect.name)
        self._gauges_at = float("-inf")

    # --- receiving --------------------------------------------------------------------------

    def receive_stripe(self, body: bytes, signature: str | None) -> Received:
        settings = self._ctx.settings
        secrets = [s.get_secret_value() for s in settings.stripe_webhook_secrets]
        incoming = self._read(
            ProviderName.STRIPE,
            lambda: read_stripe(body, signature, secrets, self._ctx.clock.now()),
        )
        return self._store(incoming, queued=True)

    def receive_cloudpayments(
        self,
        kind: CloudPaymentsKind,
        body: bytes,
        content_type: str | None,
        signature: str | None,
    ) -> CloudPaymentsReply:
        secret = self._ctx.settings.cloudpayments_api_secret
        incoming = self._read(
            ProviderName.CLOUDPAYMENTS,
            lambda: read_cloudpayments(
                body, kind, content_type, signature, secret.get_secret_value() if secret else None
            ),
        )
        if kind is not CloudPaymentsKind.CHECK:
            return CloudPaymentsReply(CheckCode.OK, self._store(incoming, queued=True))
        # A Check is a question answered now; it is stored (as ignored) only as the record of
        # what CloudPayments asked. A repeated Check is asked again: the answer may have changed.
        received = self._store(incoming, queued=False)
        try:
            code = CheckCode(self._checker.check(incoming.payload))
        except Exception:  # an order that cannot be checked is not taken (fail closed)
            log.exception("the CloudPayments Check could not be answered; rejecting the payment")
            code = CheckCode.REJECTED
        return CloudPaymentsReply(code, received)

    def receive(self, provider: ProviderName, read: Callable[[], Incoming]) -> Received:
        """Another provider's webhook (RuStore, services/store/): ``read`` verifies and reads
        it (raising a refusal), then it is stored and queued like any other."""
        return self._store(self._read(provider, read), queued=True)

    def _read(self, provider: ProviderName, read: Any) -> Incoming:
        try:
            incoming: Incoming = read()
        except DomainError as exc:
            reason = _rejection(exc)
            self._ctx.metrics.webhooks_rejected.labels(provider.value, reason).inc()
            log.info("webhook refused", extra={"provider": provider.value, "reason": reason})
            raise
        return incoming

    def _store(self, incoming: Incoming, *, queued: bool) -> Received:
        now = self._ctx.clock.now()
        row = {
            "provider": incoming.provider.value,
            "event_id": incoming.event_id,
            "kind": incoming.kind,
            "body": incoming.body,
            "payload": incoming.payload,
            "headers": incoming.headers,
            "received_at": now,
            "event_at": incoming.event_at,
            "status": "queued" if queued else "ignored",
            "attempts": 0,
            "next_attempt_at": now if queued else None,
            "applied_at": None if queued else now,
        }
        # Committed before the answer (one statement: its own transaction): a 2xx means stored.
        with one_statement(self._ctx.write) as conn:
            seq = conn.execute(self._insert, row).scalar()
        provider = incoming.provider.value
        if seq is None:
            self._ctx.metrics.webhooks_duplicates.labels(provider).inc()
            log.info(
                "webhook duplicate", extra={"provider": provider, "event_id": incoming.event_id}
            )
            return Received(None, duplicate=True)
        self._ctx.metrics.webhooks_received.labels(provider).inc()
        log.info(
            "webhook stored",
            extra={"provider": provider, "event_id": incoming.event_id, "seq": seq},
        )
        return Received(seq, duplicate=False)

    # --- the worker -------------------------------------------------------------------------

    def claim_batch(self, limit: int = BATCH_SIZE) -> list[queue.Claim]:
        """Claim due events for this worker (``SKIP LOCKED`` on PostgreSQL)."""
        claims, dead = queue.claim_batch(
            self._ctx, self.worker, limit, self._ctx.settings.webhook_max_attempts
        )
        for provider in dead:
            self._ctx.metrics.webhooks_dead.labels(provider).inc()
        return claims

    def apply(self, claim: queue.Claim) -> queue.Outcome:
        """Apply one claimed event and record the outcome."""
        if self.applier is None:
            raise RuntimeError("no event applier is wired")
        metrics = self._ctx.metrics
        try:
            applied = self.applier.apply(ProviderName(claim.provider), claim.payload)
        except Exception as exc:  # any failure of the apply is retried, never lost
            error = f"{type(exc).__name__}: {exc}"
            log.warning(
                "webhook apply failed",
                extra={"seq": claim.seq, "provider": claim.provider, "attempt": claim.attempt},
                exc_info=True,
            )
            outcome = queue.record_failure(
                self._ctx, claim, error, self._ctx.settings.webhook_max_attempts, self._rng
            )
            if outcome.recorded:
                metrics.webhooks_failed.labels(claim.provider).inc()
                if outcome.status == "dead":
                    metrics.webhooks_dead.labels(claim.provider).inc()
            return outcome
        outcome = queue.record_done(self._ctx, claim, bool(applied))
        if outcome.recorded:
            metrics.webhooks_applied.labels(claim.provider, outcome.status).inc()
        return outcome

    def work_once(self, limit: int = BATCH_SIZE) -> int:
        """One round: claim a batch and apply it in received order. Returns how many were
        claimed (0: nothing was due)."""
        claims = self.claim_batch(limit)
        for claim in claims:
            self.apply(claim)
        # The gauges count every pending row: after every full round of a backlog that costs
        # as much as the round (the drain was quadratic). They are refreshed when the queue has
        # caught up (a short round, idle rounds included) and otherwise every GAUGE_INTERVAL_S.
        now = time.monotonic()
        if len(claims) < limit or now - self._gauges_at >= GAUGE_INTERVAL_S:
            self._gauges_at = now
            self.refresh_gauges()
        return len(claims)

    def drain(self) -> int:
        """Rounds until nothing is due (tests, the CLI); returns how many claims were made."""
        total = 0
        while n := self.work_once():
            total += n
        return total

    def refresh_gauges(self) -> None:
        now = self._ctx.clock.now()
        metrics = self._ctx.metrics
        with transaction(self._ctx.read) as session:
            rows = session.execute(
                select(
                    WebhookEvent.provider,
                    WebhookEvent.status,
                    func.count(),
                    func.min(WebhookEvent.received_at),
                )
                .where(WebhookEvent.status.in_((*WEBHOOK_PENDING, "dead")))
                .group_by(WebhookEvent.provider, WebhookEvent.status)
            ).all()
        pending = dict.fromkeys(WEBHOOK_PROVIDERS, 0)
        dead = dict.fromkeys(WEBHOOK_PROVIDERS, 0)
        oldest = dict.fromkeys(WEBHOOK_PROVIDERS, 0.0)
        for provider, status, count, first in rows:
            if status == "dead":
                dead[provider] = count
                continue
            pending[provider] += count
            age = max((now - first).total_seconds(), 0.0)
            oldest[provider] = max(oldest[provider], age)
        for provider in WEBHOOK_PROVIDERS:
            metrics.webhooks_queue_depth.labels(provider, "pending").set(pending[provider])
            metrics.webhooks_queue_depth.labels(provider, "dead").set(dead[provider])
            metrics.webhooks_oldest_age.labels(provider).set(oldest[provider])

    # --- the operator -----------------------------------------------------------------------

    def events(
        self, *, status: str | None = None, provider: str | None = None, limit: int = 100
    ) -> list[WebhookEvent]:
        """The newest events first."""
        query = select(WebhookEvent).order_by(WebhookEvent.seq.desc()).limit(limit)
        if status is not None:
            query = query.where(WebhookEvent.status == status)
        if provider is not None:
            query = query.where(WebhookEvent.provider == provider)
        with transaction(self._ctx.read) as session:
            return list(session.scalars(query))

    def redrive(self, actor: str, seq: int) -> WebhookEvent:
        """Give a dead-lettered event a fresh set of attempts, due now; audited."""
        now = self._ctx.clock.now()
        with transaction(self._ctx.write) as session:
            row = session.scalar(
                select(WebhookEvent).where(WebhookEvent.seq == seq).with_for_update()
            )
            if row is None:
                raise NotFound(f"no webhook {seq}")
            if row.status != "dead":
                raise ValidationFailed(
                    f"webhook {seq} is {row.status}: only a dead-lettered webhook is redriven"
                )
            self._redrive_row(session, row, actor, now)
            return row

    def redrive_dead(self, actor: str) -> list[int]:
        """Redrive every dead-lettered event (each audited); returns their ``seq``."""
        now = self._ctx.clock.now()
        with transaction(self._ctx.write) as session:
            rows = session.scalars(
                select(WebhookEvent)
                .where(WebhookEvent.status == "dead")
                .order_by(WebhookEvent.seq)
                .with_for_update()
            ).all()
            for row in rows:
                self._redrive_row(session, row, actor, now)
            return [row.seq for row in rows]

    @staticmethod
    def _redrive_row(session: Any, row: WebhookEvent, actor: str, now: Any) -> None:
        # ``attempts`` restarts: a dead row holds no lease, so no worker's token is live.
        record(
            session,
            now,
            actor,
            "webhook.redrive",
            f"webhooks/{row.seq}",
            {
                "provider": row.provider,
                "event_id": row.event_id,
                "attempts": row.attempts,
                "last_error": row.last_error,
            },
        )
        row.status = "queued"
        row.attempts = 0
        row.next_attempt_at = now

    # --- the sweeper ------------------------------------------------------------------------

    def prune(self) -> int:
        """Delete applied and ignored events older than ``webhook_retention_days`` (by arrival;
        the dedupe window). Dead and pending events stay whatever their age."""
        cutoff = self._ctx.clock.now() - timedelta(days=self._ctx.settings.webhook_retention_days)
        with transaction(self._ctx.write) as session:
            old = (
                select(WebhookEvent.seq)
                .where(
                    WebhookEvent.status.in_(("applied", "ignored")),
                    WebhookEvent.received_at < cutoff,
                )
                .order_by(WebhookEvent.seq)
                .limit(PRUNE_LIMIT)
            )
            seqs = list(session.scalars(old))
            if seqs:
                session.execute(delete(WebhookEvent).where(WebhookEvent.seq.in_(seqs)))
        if seqs:
            log.info("webhooks pruned", extra={"count": len(seqs)})
        return len(seqs)
