"""Install/uninstall callbacks to an app's ``callback_url``, through a transactional outbox
(docs/marketplace.md, "Install/uninstall callbacks").

An event is written in the same transaction as the installation or uninstallation it reports
(:func:`enqueue_callback`), so it exists exactly when the change does; the request never waits
for the app. The periodic sweeper delivers due events (:meth:`CallbackService.deliver_due`):
a 2xx answer delivers an event; anything else is retried with exponential backoff until
24 hours after the event, when it fails for good (audited).

Two sweepers (two workers) do not attempt one event at once: an attempt first claims the event
in a short transaction (``SELECT … FOR UPDATE SKIP LOCKED`` on PostgreSQL; SQLite serialises
writers) and moves ``next_attempt_at`` one lease ahead, then posts outside any transaction.
A sweeper that dies mid-attempt leaves the event to be retried when the lease ends, so an app
can receive an event twice: delivery is at least once, and the app drops repeats by the event
id (the token's ``jti``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

import httpx
from sqlalchemy import exists, select
from sqlalchemy.orm import Session, aliased

from ..db import transaction
from ..marketplace_tokens import MarketplaceTokens
from ..models import MarketplaceApp, MarketplaceCallback, new_id
from .context import ServiceContext
from .outbox_attempts import MAX_ERROR, OutboxRow, Settled, locked_row, settle_attempt

log = logging.getLogger("tgflow.server.marketplace.callbacks")


class CallbackKind(StrEnum):
    INSTALLED = "installed"
    UNINSTALLED = "uninstalled"


FIRST_RETRY = timedelta(seconds=30)
MAX_RETRY = timedelta(hours=1)
GIVE_UP_AFTER = timedelta(hours=24)
#: How long a claimed event is left to its sweeper: well past the delivery timeout.
LEASE = timedelta(seconds=60)
DELIVERY_TIMEOUT_SECONDS = 5.0
#: Events attempted per sweep at most, so that a round of an app that times out stays bounded.
SWEEP_LIMIT = 50


def enqueue_callback(
    session: Session, now: datetime, backend_id: str, app_id: str, kind: CallbackKind
) -> MarketplaceCallback:
    """Add an event to the outbox in the caller's transaction; due at once."""
    event = MarketplaceCallback(
        id=new_id(),
        backend_id=backend_id,
        app_id=app_id,
        kind=kind.value,
        created_at=now,
        attempts=0,
        next_attempt_at=now,
    )
    session.add(event)
    return event


def retry_delay(attempts: int) -> timedelta:
    """The wait after the ``attempts``-th failed attempt: 30 s, doubling, at most 1 hour."""
    return min(FIRST_RETRY * 2 ** min(max(attempts - 1, 0), 16), MAX_RETRY)


@dataclass(frozen=True)
class _Claim:
    event_id: str
    backend_id: str
    app_id: str
    kind: str
    created_at: datetime
    #: The event's ``attempts`` after this claim: the lease's token.
    attempt: int
    callback_url: str | None


class CallbackService:
    def __init__(self, ctx: ServiceContext, tokens: MarketplaceTokens) -> None:
        self._ctx = ctx
        self._tokens = tokens

    def deliver_due(self, limit: int = SWEEP_LIMIT) -> int:
        """Attempt each due event once (at most ``limit``); returns how many were delivered.

        Called by the periodic sweeper, in the threadpool.
        """
        delivered = 0
        with httpx.Client(
            timeout=DELIVERY_TIMEOUT_SECONDS,
            follow_redirects=False,
            headers={"User-Agent": "tgflow-marketplace"},
        ) as client:
            for _ in range(limit):
                claim = self._claim_next()
                if claim is None:
                    break
                error = self._post(client, claim)
                delivered += self._record(claim, error)
        return delivered

    def _claim_next(self) -> _Claim | None:
        now = self._ctx.clock.now()
        event_table = MarketplaceCallback
        older = aliased(MarketplaceCallback)
        with transaction(self._ctx.write) as session:
            event = session.scalar(
                select(event_table)
                .where(
                    event_table.next_attempt_at <= now,
                    # One backend's events of one app go out in order: none overtakes an
                    # earlier one still pending (retrying, or held by another sweeper).
                    ~exists().where(
                        older.backend_id == event_table.backend_id,
                        older.app_id == event_table.app_id,
                        older.seq < event_table.seq,
                        older.next_attempt_at.is_not(None),
                    ),
                )
                .order_by(event_table.next_attempt_at, event_table.seq)
                .limit(1)
                .with_for_update(skip_locked=True, of=event_table)
            )
            if event is None:
                return None
            event.attempts += 1
            event.next_attempt_at = now + LEASE
            app = session.get(MarketplaceApp, event.app_id)
            return _Claim(
                event_id=event.id,
                backend_id=event.backend_id,
                app_id=event.app_id,
                kind=event.kind,
                created_at=event.created_at,
                attempt=event.attempts,
                callback_url=app.callback_url if app is not None else None,
            )

    def _post(self, client: httpx.Client, claim: _Claim) -> str | None:
        """Post the event; ``None`` when the app answered 2xx, else what went wrong."""
        if claim.callback_url is None:
            return "the app is no longer listed"
        token = self._tokens.sign_callback(
            event_id=claim.event_id,
            event=claim.kind,
            backend_id=claim.backend_id,
            app_id=claim.app_id,
            occurred_at=claim.created_at,
            now=self._ctx.clock.now(),
        )
        try:
            # Streamed and never read: the answer's body is of no interest and may be large.
            with client.stream("POST", claim.callback_url, json={"token": token}) as response:
                status = response.status_code
        except httpx.TimeoutException:
            return f"no answer within {DELIVERY_TIMEOUT_SECONDS:g} s"
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {exc}"[:MAX_ERROR]
        if 200 <= status < 300:
            return None
        return f"HTTP {status}"

    def _record(self, claim: _Claim, error: str | None) -> int:
        now = self._ctx.clock.now()

        def retry_at(row: OutboxRow) -> datetime | None:
            deadline = claim.created_at + GIVE_UP_AFTER
            # The last retry falls on the deadline itself, so the give-up time is exact.
            return min(now + retry_delay(row.attempts), deadline) if now < deadline else None

        with transaction(self._ctx.write) as session:
            event = locked_row(
                session, select(MarketplaceCallback).where(MarketplaceCallback.id == claim.event_id)
            )
            if event is None:
                return 0
            settled = settle_attempt(
                event, attempt=claim.attempt, error=error, now=now, retry_at=retry_at
            )
            if settled is Settled.DELIVERED:
                log.info(
                    "marketplace callback delivered",
                    extra={"event_id": event.id, "app_id": event.app_id},
                )
                return 1
            if settled is not Settled.FAILED:
                return 0
            # Imported here: the marketplace package imports this module (its outbox).
            from .marketplace.audit import CLOCK, audit

            audit(
                session,
                now,
                CLOCK,
                "callback.failed",
                backend_id=event.backend_id,
                app_id=event.app_id,
                after={
                    "event_id": event.id,
                    "event": event.kind,
                    "created_at": event.created_at.isoformat(),
                    "attempts": event.attempts,
                    "last_error": event.last_error,
                },
            )
            log.warning(
                "marketplace callback failed for good",
                extra={"event_id": event.id, "app_id": event.app_id, "error": error},
            )
            return 0

    def events(
        self, *, backend_id: str | None = None, app_id: str | None = None
    ) -> list[MarketplaceCallback]:
        """The outbox, oldest first (for the operator and the tests)."""
        with transaction(self._ctx.read) as session:
            query = select(MarketplaceCallback).order_by(MarketplaceCallback.seq)
            if backend_id is not None:
                query = query.where(MarketplaceCallback.backend_id == backend_id)
            if app_id is not None:
                query = query.where(MarketplaceCallback.app_id == app_id)
            return list(session.scalars(query))
