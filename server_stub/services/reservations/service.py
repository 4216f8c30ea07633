"""The reservation service: reserve, commit, rollback, and the sweep of expired holds.

Lock order, everywhere: idempotency key, then period, then reservations (no deadlocks).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, delete, func, select
from sqlalchemy.orm import Session, sessionmaker

from agent.protocol import IDEMPOTENCY_WINDOW_SECONDS, RESERVATION_TTL_SECONDS

from ...db import transaction, write_connection
from ...errors import (
    DomainError,
    IdempotencyConflict,
    LicenseInactive,
    NotFound,
    QuotaExceeded,
    ReservationConflict,
    ReservationExpired,
    ValidationFailed,
)
from ...models import IdempotencyKey, Reservation, UsagePeriod, new_id
from ..context import ServiceContext
from ..periods import active_plan, current_period, is_anchored_period
from .holds import lock_period, release_expired_holds
from .statements import (
    COMMITTED,
    COUNTERS,
    EXPIRED,
    HELD,
    INSERT_RESERVATION,
    KEY,
    LOCK_COUNTERS,
    RECORD_OUTCOME,
    RESERVATION,
    RESERVE_CONTEXT,
    ROLLED_BACK,
    SETTLE_CONTEXT,
    SETTLE_PERIOD,
    SETTLE_RESERVATION,
    TAKE_HOLD,
    claim_statement,
)

log = logging.getLogger("tgflow.server.usage")


@dataclass(frozen=True)
class ReservationRow:
    """What the router answers about one reservation (replays answer exactly the same)."""

    id: str
    messages: int
    status: str
    used: int
    expires_at: datetime
    remaining_after_reserve: int
    remaining_after_settle: int | None


@dataclass(frozen=True)
class ReserveResult:
    reservation: ReservationRow
    created: bool


class _Raced(Exception):
    """A reservation changed between its read and its update: roll back and try again."""


def _request_hash(messages: int) -> str:
    body = json.dumps({"messages": messages}, sort_keys=True)
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def _record_outcome(
    conn: Connection,
    key: dict[str, str],
    reservation_id: str | None,
    detail: str | None,
    remaining: int | None,
) -> None:
    """Record a claimed id's outcome: its reservation, or the refusal as it was answered."""
    conn.execute(
        RECORD_OUTCOME,
        {
            "b_user_id": key["user_id"],
            "b_key": key["key"],
            "b_reservation_id": reservation_id,
            "b_detail": detail,
            "b_remaining": remaining,
        },
    )


def _row(r: Any) -> ReservationRow:
    return ReservationRow(
        id=r.id,
        messages=r.messages,
        status=r.status,
        used=r.used,
        expires_at=r.expires_at,
        remaining_after_reserve=r.remaining_after_reserve,
        remaining_after_settle=r.remaining_after_settle,
    )


@contextmanager
def _refusals_keep_writes(factory: sessionmaker[Session]) -> Iterator[Connection]:
    """A write transaction that still commits when a refusal (a DomainError) ends it.

    A refusal must keep what came before it: the release of expired holds, and a refused
    reserve's record under its correlation_id. Refusals are raised after those writes only.
    """
    refusal: DomainError | None = None
    with write_connection(factory) as conn:
        try:
            yield conn
        except DomainError as exc:
            refusal = exc
    if refusal is not None:
        raise refusal


class ReservationService:
    def __init__(self, ctx: ServiceContext) -> None:
        self._ctx = ctx
        self._claim = claim_statement(ctx.engine.dialect.name)

    def _release(self, session: Session, period: UsagePeriod, now: datetime) -> int:
        released = release_expired_holds(session, period, now)
        self._ctx.metrics.reservations_expired.inc(released)
        return released

    def _prepare_period(self, conn: Connection, user_id: str, now: datetime) -> str:
        """The rare path: make this period's row and release its expired holds (ORM)."""
        with Session(bind=conn, autoflush=False) as session:
            active = active_plan(session, user_id, now)
            assert active is not None
            period = current_period(session, active, now, lock=True)
            self._release(session, period, now)
            session.flush()
            return period.id

    def reserve(self, user_id: str, messages: int, correlation_id: str) -> ReserveResult:
        now = self._ctx.clock.now()
        request_hash = _request_hash(messages)
        key = {"user_id": user_id, "key": correlation_id}
        with _refusals_keep_writes(self._ctx.write) as conn:
            context = conn.execute(RESERVE_CONTEXT, {"user_id": user_id, "now": now}).first()
            if context is None:
                raise LicenseInactive("this account has no active plan")
            claimed = conn.execute(
                self._claim,
                {
                    **key,
                    "request_hash": request_hash,
                    "expires_at": now + timedelta(seconds=IDEMPOTENCY_WINDOW_SECONDS),
                    "now": now,
                },
            ).first()
            if claimed is None:
                return self._replay(conn, key, request_hash)
            period_id = context.period_id
            if (
                period_id is None
                or context.stale
                or not is_anchored_period(
                    context.period_anchor, context.period_start, context.period_end
                )
            ):
                period_id = self._prepare_period(conn, user_id, now)
            held = conn.execute(TAKE_HOLD, {"period_id": period_id, "messages": messages}).first()
            if held is None:
                used, held_now, limit = conn.execute(COUNTERS, {"period_id": period_id}).one()
                left = max(limit - used - held_now, 0)
                detail = f"{messages} message(s) asked, {left} left in this period"
                _record_outcome(conn, key, None, detail, left)
                self._ctx.metrics.quota_refusals.inc()
                raise QuotaExceeded(detail, remaining=left)
            used, held_now, limit = held
            reservation = ReservationRow(
                id=new_id(),
                messages=messages,
                status=HELD,
                used=0,
                expires_at=now + timedelta(seconds=RESERVATION_TTL_SECONDS),
                remaining_after_reserve=max(limit - used - held_now, 0),
                remaining_after_settle=None,
            )
            conn.execute(
                INSERT_RESERVATION,
                {
                    "id": reservation.id,
                    "user_id": user_id,
                    "period_id": period_id,
                    "correlation_id": correlation_id,
                    "messages": messages,
                    "status": HELD,
                    "used": 0,
                    "created_at": now,
                    "expires_at": reservation.expires_at,
                    "settled_at": None,
                    "remaining_after_reserve": reservation.remaining_after_reserve,
                    "remaining_after_settle": None,
                },
            )
            _record_outcome(conn, key, reservation.id, None, None)
            return ReserveResult(reservation, created=True)

    def _replay(self, conn: Connection, key: dict[str, str], request_hash: str) -> ReserveResult:
        """The id was claimed before: answer its recorded outcome."""
        recorded = conn.execute(KEY, key).one()
        if recorded.request_hash != request_hash:
            raise IdempotencyConflict("this correlation_id was used with a different request body")
        if recorded.reservation_id is None:
            raise QuotaExceeded(recorded.refused_detail, remaining=recorded.refused_remaining)
        existing = conn.execute(RESERVATION, {"id": recorded.reservation_id}).one()
        return ReserveResult(_row(existing), created=False)

    def _settle(self, user_id: str, reservation_id: str, used: int | None) -> ReservationRow:
        """Commit ``used`` messages, or roll back when ``used`` is None."""
        for _attempt in range(3):
            try:
                return self._settle_once(user_id, reservation_id, used)
            except _Raced:
                continue
        return self._settle_once(user_id, reservation_id, used)

    def _settle_once(self, user_id: str, reservation_id: str, used: int | None) -> ReservationRow:
        now = self._ctx.clock.now()
        with _refusals_keep_writes(self._ctx.write) as conn:
            params = {"id": reservation_id, "user_id": user_id, "now": now}
            r = conn.execute(SETTLE_CONTEXT, params).first()
            if r is None:
                raise NotFound("no such reservation")
            if r.stale:
                # Expired holds of the period (maybe this one) are released first, as always.
                self._prepare_period_of(conn, r.period_id, now)
                r = conn.execute(SETTLE_CONTEXT, params).one()
            if r.status == HELD:
                if used is not None and used > r.messages:
                    raise ValidationFailed(
                        f"used ({used}) is more than the {r.messages} message(s) reserved"
                    )
                counted, held, limit = conn.execute(LOCK_COUNTERS, {"period_id": r.period_id}).one()
                # A concurrent settle of this reservation may have won since our read: the
                # conditional UPDATE finds it no longer held, and nothing was written yet.
                settled = conn.execute(
                    SETTLE_RESERVATION,
                    {
                        "b_id": reservation_id,
                        "b_status": ROLLED_BACK if used is None else COMMITTED,
                        "b_used": used or 0,
                        "b_now": now,
                        "b_left": max(limit - counted - (used or 0) - held + r.messages, 0),
                    },
                ).first()
                if settled is None:
                    raise _Raced
                conn.execute(
                    SETTLE_PERIOD,
                    {"period_id": r.period_id, "messages": r.messages, "b_used": used or 0},
                )
                return _row(settled)
            if used is None:
                if r.status in (ROLLED_BACK, EXPIRED):
                    return _row(r)
                raise ReservationConflict("this reservation was already committed")
            if r.status == COMMITTED:
                if r.used == used:
                    return _row(r)
                raise ReservationConflict(f"this reservation was committed with used={r.used}")
            if r.status == ROLLED_BACK:
                raise ReservationConflict("this reservation was rolled back")
            raise ReservationExpired(
                "this reservation expired before it was committed; its hold was released"
            )

    def _prepare_period_of(self, conn: Connection, period_id: str, now: datetime) -> None:
        with Session(bind=conn, autoflush=False) as session:
            self._release(session, lock_period(session, period_id), now)
            session.flush()

    def commit(self, user_id: str, reservation_id: str, used: int) -> ReservationRow:
        return self._settle(user_id, reservation_id, used)

    def rollback(self, user_id: str, reservation_id: str) -> ReservationRow:
        return self._settle(user_id, reservation_id, None)

    # --- housekeeping ---------------------------------------------------------------------------

    def sweep(self, limit: int = 200) -> int:
        """Release every expired hold (one period per transaction); returns how many."""
        now = self._ctx.clock.now()
        with transaction(self._ctx.read) as session:
            period_ids = list(
                session.scalars(
                    select(Reservation.period_id)
                    .where(Reservation.status == HELD, Reservation.expires_at <= now)
                    .distinct()
                    .limit(limit)
                )
            )
        released = 0
        for period_id in period_ids:
            with transaction(self._ctx.write) as session:
                released += self._release(session, lock_period(session, period_id), now)
        with transaction(self._ctx.write) as session:
            session.execute(delete(IdempotencyKey).where(IdempotencyKey.expires_at <= now))
        if released:
            log.info("released expired holds", extra={"count": released})
        return released

    def count_open(self) -> int:
        with transaction(self._ctx.read) as session:
            return (
                session.scalar(
                    select(func.count()).select_from(Reservation).where(Reservation.status == HELD)
                )
                or 0
            )
