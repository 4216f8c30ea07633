"""Usage reservations: reserve, commit, rollback, and release of expired holds.

Invariant, under any concurrency: ``used + held <= quota_limit`` for every period. It is kept by
the database: every change to a period happens under that period's row lock (``SELECT … FOR
UPDATE`` on PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite), holds are taken with a conditional
``UPDATE`` and the table carries a CHECK constraint.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import bindparam, delete, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from agent.protocol import (
    IDEMPOTENCY_WINDOW_SECONDS,
    RESERVATION_TTL_SECONDS,
    ReservationStatus,
)

from ..db import transaction
from ..errors import (
    DomainError,
    IdempotencyConflict,
    LicenseInactive,
    NotFound,
    QuotaExceeded,
    ReservationConflict,
    ReservationExpired,
    ValidationFailed,
)
from ..models import IdempotencyKey, Reservation, UsagePeriod
from .context import ServiceContext
from .periods import active_plan, current_period, remaining

log = logging.getLogger("tgflow.server.usage")

HELD = ReservationStatus.HELD.value
COMMITTED = ReservationStatus.COMMITTED.value
ROLLED_BACK = ReservationStatus.ROLLED_BACK.value
EXPIRED = ReservationStatus.EXPIRED.value


@dataclass(frozen=True)
class ReserveResult:
    reservation: Reservation
    created: bool


def _request_hash(messages: int) -> str:
    body = json.dumps({"messages": messages}, sort_keys=True)
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def _lock_period(session: Session, period_id: str) -> UsagePeriod:
    period = session.scalar(
        select(UsagePeriod)
        .where(UsagePeriod.id == period_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    assert period is not None
    return period


_EXPIRED_HOLD = (
    select(Reservation.id)
    .where(
        Reservation.period_id == bindparam("period_id"),
        Reservation.status == HELD,
        Reservation.expires_at <= bindparam("now"),
    )
    .limit(1)
)


def has_expired_holds(session: Session, period: UsagePeriod, now: datetime) -> bool:
    return session.scalar(_EXPIRED_HOLD, {"period_id": period.id, "now": now}) is not None


def release_expired_holds(session: Session, period: UsagePeriod, now: datetime) -> int:
    """Release the expired holds of a period whose row lock the caller holds."""
    expired = list(
        session.scalars(
            select(Reservation)
            .where(
                Reservation.period_id == period.id,
                Reservation.status == HELD,
                Reservation.expires_at <= now,
            )
            .with_for_update()
        )
    )
    for r in expired:
        r.status = EXPIRED
        r.settled_at = now
        period.held -= r.messages
    left = remaining(period)
    for r in expired:
        r.remaining_after_settle = left
    if expired:
        session.flush()
    return len(expired)


@contextmanager
def _refusals_keep_releases(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A write transaction that still commits when a refusal (a DomainError) ends it.

    Every operation first releases the period's expired holds; a refusal that follows (quota
    exceeded, conflict, expired) must not undo that release. Refusals are raised before any
    other write, so committing what came before them commits exactly the release.
    """
    refusal: DomainError | None = None
    with transaction(factory) as session:
        try:
            yield session
        except DomainError as exc:
            refusal = exc
    if refusal is not None:
        raise refusal


class ReservationService:
    def __init__(self, ctx: ServiceContext) -> None:
        self._ctx = ctx

    def _release(self, session: Session, period: UsagePeriod, now: datetime) -> int:
        released = release_expired_holds(session, period, now)
        self._ctx.metrics.reservations_expired.inc(released)
        return released

    def reserve(self, user_id: str, messages: int, correlation_id: str) -> ReserveResult:
        now = self._ctx.clock.now()
        request_hash = _request_hash(messages)
        with _refusals_keep_releases(self._ctx.write) as session:
            active = active_plan(session, user_id)
            if active is None:
                raise LicenseInactive("this account has no active plan")
            period = current_period(session, active, now, lock=True)
            self._release(session, period, now)

            key = session.get(IdempotencyKey, (user_id, correlation_id), with_for_update=True)
            if key is not None and key.expires_at > now:
                if key.request_hash != request_hash:
                    raise IdempotencyConflict(
                        "this correlation_id was used with a different request body"
                    )
                existing = session.get(Reservation, key.reservation_id)
                assert existing is not None
                return ReserveResult(existing, created=False)
            if key is not None:
                session.delete(key)
                session.flush()

            held = session.execute(
                update(UsagePeriod)
                .where(
                    UsagePeriod.id == period.id,
                    UsagePeriod.used + UsagePeriod.held + messages <= UsagePeriod.quota_limit,
                )
                .values(held=UsagePeriod.held + messages)
                .returning(UsagePeriod.used, UsagePeriod.held, UsagePeriod.quota_limit)
            ).first()
            if held is None:
                self._ctx.metrics.quota_refusals.inc()
                raise QuotaExceeded(
                    f"{messages} message(s) asked, {remaining(period)} left in this period",
                    remaining=remaining(period),
                )
            used, held_now, limit = held
            reservation = Reservation(
                user_id=user_id,
                period_id=period.id,
                correlation_id=correlation_id,
                messages=messages,
                status=HELD,
                used=0,
                created_at=now,
                expires_at=now + timedelta(seconds=RESERVATION_TTL_SECONDS),
                remaining_after_reserve=max(limit - used - held_now, 0),
            )
            session.add(reservation)
            session.flush()
            session.add(
                IdempotencyKey(
                    user_id=user_id,
                    key=correlation_id,
                    request_hash=request_hash,
                    reservation_id=reservation.id,
                    expires_at=now + timedelta(seconds=IDEMPOTENCY_WINDOW_SECONDS),
                )
            )
            return ReserveResult(reservation, created=True)

    def _settle(self, user_id: str, reservation_id: str, used: int | None) -> Reservation:
        """Commit ``used`` messages, or roll back when ``used`` is None."""
        now = self._ctx.clock.now()
        with _refusals_keep_releases(self._ctx.write) as session:
            period_id = session.scalar(
                select(Reservation.period_id).where(
                    Reservation.id == reservation_id, Reservation.user_id == user_id
                )
            )
            if period_id is None:
                raise NotFound("no such reservation")
            period = _lock_period(session, period_id)
            self._release(session, period, now)
            r = session.scalar(
                select(Reservation)
                .where(Reservation.id == reservation_id)
                .with_for_update()
                .execution_options(populate_existing=True)
            )
            assert r is not None
            if r.status == HELD:
                if used is not None and used > r.messages:
                    raise ValidationFailed(
                        f"used ({used}) is more than the {r.messages} message(s) reserved"
                    )
                period.held -= r.messages
                if used is None:
                    r.status = ROLLED_BACK
                else:
                    period.used += used
                    r.status = COMMITTED
                    r.used = used
                r.settled_at = now
                session.flush()
                r.remaining_after_settle = remaining(period)
                return r
            if used is None:
                if r.status in (ROLLED_BACK, EXPIRED):
                    return r
                raise ReservationConflict("this reservation was already committed")
            if r.status == COMMITTED:
                if r.used == used:
                    return r
                raise ReservationConflict(f"this reservation was committed with used={r.used}")
            if r.status == ROLLED_BACK:
                raise ReservationConflict("this reservation was rolled back")
            raise ReservationExpired(
                "this reservation expired before it was committed; its hold was released"
            )

    def commit(self, user_id: str, reservation_id: str, used: int) -> Reservation:
        return self._settle(user_id, reservation_id, used)

    def rollback(self, user_id: str, reservation_id: str) -> Reservation:
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
                released += self._release(session, _lock_period(session, period_id), now)
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
