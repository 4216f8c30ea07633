"""Delivering the ``notifications`` outbox, as the marketplace's callback outbox is delivered
(services/callbacks.py): claim a due row in a short transaction, send outside any transaction,
record the outcome.

The claim bumps ``attempts`` (the lease token) and moves ``next_attempt_at`` one lease ahead, so
two sweepers never attempt one row at once and a sweeper that dies mid-attempt leaves the row to
be retried when the lease ends (at least once). A failed attempt is retried after the backoff of
the callbacks (30 s, doubling, at most 1 hour), or later when the receiver asked for more
(Telegram's ``retry_after``, a webhook's ``Retry-After``); after ``notify_max_attempts`` failures
the row is dead-lettered (``failed_at``, audited) until an Admin redrives it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from ...db import transaction
from ...portal_models import Client, License, Notification
from ..audit.chain import record
from ..callbacks import retry_delay
from ..context import ServiceContext
from ..outbox_attempts import OutboxRow, Settled, locked_row, settle_attempt
from .channels import DeliveryFailed, Sender
from .messages import LicenseFacts, Message, render
from .targets import Targets, load_targets

log = logging.getLogger("tgflow.server.notifications")

#: How long a claimed row is left to its sweeper: well past one attempt's timeout.
LEASE: Final = timedelta(seconds=120)
#: Rows attempted per sweep at most, so that a round stays bounded when a channel hangs.
SWEEP_LIMIT: Final = 50
#: The audit actor of what the sweeper does on its own.
SWEEPER_ACTOR: Final = "system:notifications"


@dataclass(frozen=True)
class _Claim:
    seq: int
    channel: str
    #: The row's ``attempts`` after this claim: the lease's token.
    attempt: int
    message: Message
    targets: Targets


def license_facts(session: Session, license_id: str | None) -> LicenseFacts | None:
    if license_id is None:
        return None
    row = session.execute(
        select(License.id, License.license_key, License.valid_until, Client.legal_name)
        .join(Client, Client.id == License.client_id)
        .where(License.id == license_id)
    ).first()
    if row is None:
        return None
    return LicenseFacts(
        license_id=row.id,
        client=row.legal_name,
        key_last4=row.license_key[-4:],
        valid_until=row.valid_until,
    )


class OutboxDelivery:
    def __init__(self, ctx: ServiceContext, senders: dict[str, Sender], setting_key: str) -> None:
        self._ctx = ctx
        self._senders = senders
        self._setting_key = setting_key

    def deliver_due(self, limit: int = SWEEP_LIMIT) -> int:
        """Attempt each due row once (at most ``limit``); returns how many were delivered."""
        delivered = 0
        for _ in range(limit):
            claim = self._claim_next()
            if claim is None:
                break
            try:
                self._senders[claim.channel].send(claim.message, claim.targets)
            except DeliveryFailed as exc:
                self._record(claim, exc.reason, exc.retry_after)
            else:
                delivered += self._record(claim, None, None)
        return delivered

    def _claim_next(self) -> _Claim | None:
        now = self._ctx.clock.now()
        with transaction(self._ctx.write) as session:
            row = session.scalar(
                select(Notification)
                .where(Notification.next_attempt_at <= now)
                .order_by(Notification.next_attempt_at, Notification.seq)
                .limit(1)
                .with_for_update(skip_locked=True)
            )
            if row is None:
                return None
            row.attempts += 1
            row.next_attempt_at = now + LEASE
            targets = load_targets(session, self._setting_key)
            message = render(
                row.kind,
                license_facts(session, row.license_id),
                row.payload if isinstance(row.payload, dict) else {},
                targets.language,
            )
            return _Claim(row.seq, row.channel, row.attempts, message, targets)

    def _record(self, claim: _Claim, error: str | None, retry_after: float | None) -> int:
        now = self._ctx.clock.now()

        def retry_at(row: OutboxRow) -> datetime | None:
            if row.attempts >= self._ctx.settings.notify_max_attempts:
                return None
            wait = retry_delay(row.attempts)
            if retry_after is not None:
                wait = max(wait, timedelta(seconds=retry_after))
            return now + wait

        with transaction(self._ctx.write) as session:
            row = locked_row(session, select(Notification).where(Notification.seq == claim.seq))
            if row is None:
                return 0
            settled = settle_attempt(
                row, attempt=claim.attempt, error=error, now=now, retry_at=retry_at
            )
            if settled is Settled.DELIVERED:
                log.info("notification delivered", extra={"seq": row.seq, "channel": row.channel})
                return 1
            if settled is not Settled.FAILED:
                return 0
            record(
                session,
                now,
                SWEEPER_ACTOR,
                "notification.failed",
                f"notifications/{row.seq}",
                {
                    "kind": row.kind,
                    "channel": row.channel,
                    "attempts": row.attempts,
                    "last_error": row.last_error,
                },
            )
            log.warning(
                "notification dead-lettered",
                extra={"seq": row.seq, "channel": row.channel, "error": row.last_error},
            )
            return 0
