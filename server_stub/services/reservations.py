"""Usage reservations: reserve, commit, rollback, and release of expired holds.

Invariant, under any concurrency: ``used + held <= quota_limit`` for every period. It is kept by
the database: holds are taken with a conditional ``UPDATE`` (which row-locks the period on
PostgreSQL; every write transaction on SQLite is ``BEGIN IMMEDIATE``) and the table carries a
CHECK constraint.

Idempotency: a reserve first *claims* its ``correlation_id`` (an insert that waits for, and then
loses to, any concurrent claim of the same id), so duplicates have exactly one outcome, and the
outcome — a hold or a refusal — is recorded under the id for the window.

Lock order, everywhere: idempotency key, then period, then reservations (no deadlocks).

The hot paths are plain Core statements (a reserve is 5, a commit 4); the rare work — creating a
period, releasing expired holds — goes through the ORM path that the sweeper also uses.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import (
    Connection,
    Exists,
    Table,
    bindparam,
    delete,
    exists,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from agent.protocol import (
    IDEMPOTENCY_WINDOW_SECONDS,
    RESERVATION_TTL_SECONDS,
    ReservationStatus,
)

from ..db import transaction, write_connection
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
from ..models import IdempotencyKey, Plan, Reservation, Subscription, UsagePeriod, new_id
from .context import ServiceContext
from .periods import active_plan, current_period, entitled, is_anchored_period, remaining

log = logging.getLogger("tgflow.server.usage")

HELD = ReservationStatus.HELD.value
COMMITTED = ReservationStatus.COMMITTED.value
ROLLED_BACK = ReservationStatus.ROLLED_BACK.value
EXPIRED = ReservationStatus.EXPIRED.value


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


# --- hot-path statements, built once ------------------------------------------------------------

_keys = cast(Table, IdempotencyKey.__table__)
_reservations = cast(Table, Reservation.__table__)
_periods = cast(Table, UsagePeriod.__table__)
_subscriptions = cast(Table, Subscription.__table__)
_plans = cast(Table, Plan.__table__)


def expired_hold_exists(period_id: Any) -> Exists:
    """``EXISTS`` an expired hold in the period: then it is released before anything else."""
    r = _reservations.c
    return exists().where(
        r.period_id == period_id, r.status == HELD, r.expires_at <= bindparam("now")
    )


#: The user's active plan and the period that contains ``now`` (if made yet), in one read.
_RESERVE_CONTEXT = (
    select(
        _subscriptions.c.period_anchor,
        _periods.c.id.label("period_id"),
        _periods.c.period_start,
        _periods.c.period_end,
        expired_hold_exists(_periods.c.id).label("stale"),
    )
    .select_from(_subscriptions)
    .join(_plans, _plans.c.id == _subscriptions.c.plan_id)
    .outerjoin(
        _periods,
        (_periods.c.user_id == _subscriptions.c.user_id)
        & (_periods.c.period_start <= bindparam("now"))
        & (_periods.c.period_end > bindparam("now")),
    )
    .where(_subscriptions.c.user_id == bindparam("user_id"), entitled(_subscriptions))
)
_KEY = select(
    _keys.c.request_hash,
    _keys.c.reservation_id,
    _keys.c.refused_detail,
    _keys.c.refused_remaining,
).where(_keys.c.user_id == bindparam("user_id"), _keys.c.key == bindparam("key"))
_TAKE_HOLD = (
    update(_periods)
    .where(
        _periods.c.id == bindparam("period_id"),
        _periods.c.used + _periods.c.held + bindparam("messages") <= _periods.c.quota_limit,
    )
    .values(held=_periods.c.held + bindparam("messages"))
    .returning(_periods.c.used, _periods.c.held, _periods.c.quota_limit)
)
_COUNTERS = select(_periods.c.used, _periods.c.held, _periods.c.quota_limit).where(
    _periods.c.id == bindparam("period_id")
)
_RECORD_OUTCOME = (
    update(_keys)
    .where(_keys.c.user_id == bindparam("b_user_id"), _keys.c.key == bindparam("b_key"))
    .values(
        reservation_id=bindparam("b_reservation_id"),
        refused_detail=bindparam("b_detail"),
        refused_remaining=bindparam("b_remaining"),
    )
)
_INSERT_RESERVATION = insert(_reservations)
_ROW_COLUMNS = (
    _reservations.c.id,
    _reservations.c.messages,
    _reservations.c.status,
    _reservations.c.used,
    _reservations.c.expires_at,
    _reservations.c.remaining_after_reserve,
    _reservations.c.remaining_after_settle,
)
_RESERVATION = select(*_ROW_COLUMNS).where(_reservations.c.id == bindparam("id"))
_SETTLE_CONTEXT = select(
    *_ROW_COLUMNS,
    _reservations.c.period_id,
    expired_hold_exists(_reservations.c.period_id).label("stale"),
).where(_reservations.c.id == bindparam("id"), _reservations.c.user_id == bindparam("user_id"))
#: The period's lock comes first, as everywhere (then the reservation's).
_LOCK_COUNTERS = _COUNTERS.with_for_update()
_SETTLE_PERIOD = (
    update(_periods)
    .where(_periods.c.id == bindparam("period_id"))
    .values(
        held=_periods.c.held - bindparam("messages"), used=_periods.c.used + bindparam("b_used")
    )
)
_SETTLE_RESERVATION = (
    update(_reservations)
    .where(_reservations.c.id == bindparam("b_id"), _reservations.c.status == HELD)
    .values(
        status=bindparam("b_status"),
        used=bindparam("b_used"),
        settled_at=bindparam("b_now"),
        remaining_after_settle=bindparam("b_left"),
    )
    .returning(*_ROW_COLUMNS)
)


def _claim_statement(dialect: str) -> Any:
    """Claim a correlation_id: insert its key, or take over one whose window has passed.

    Returns a row only to the claimer. On PostgreSQL a concurrent claim of the same id makes
    this wait until the other transaction ends, then return nothing: one outcome per id.
    """
    ins = (postgresql if dialect == "postgresql" else sqlite).insert(_keys)
    return ins.on_conflict_do_update(
        index_elements=[_keys.c.user_id, _keys.c.key],
        set_={
            "request_hash": ins.excluded.request_hash,
            "reservation_id": None,
            "refused_detail": None,
            "refused_remaining": None,
            "expires_at": ins.excluded.expires_at,
        },
        where=_keys.c.expires_at <= bindparam("now"),
    ).returning(_keys.c.key)


def _record_outcome(
    conn: Connection,
    key: dict[str, str],
    reservation_id: str | None,
    detail: str | None,
    remaining: int | None,
) -> None:
    """Record a claimed id's outcome: its reservation, or the refusal as it was answered."""
    conn.execute(
        _RECORD_OUTCOME,
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
        self._claim = _claim_statement(ctx.engine.dialect.name)

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
            context = conn.execute(_RESERVE_CONTEXT, {"user_id": user_id, "now": now}).first()
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
            held = conn.execute(_TAKE_HOLD, {"period_id": period_id, "messages": messages}).first()
            if held is None:
                used, held_now, limit = conn.execute(_COUNTERS, {"period_id": period_id}).one()
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
                _INSERT_RESERVATION,
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
        recorded = conn.execute(_KEY, key).one()
        if recorded.request_hash != request_hash:
            raise IdempotencyConflict("this correlation_id was used with a different request body")
        if recorded.reservation_id is None:
            raise QuotaExceeded(recorded.refused_detail, remaining=recorded.refused_remaining)
        existing = conn.execute(_RESERVATION, {"id": recorded.reservation_id}).one()
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
            r = conn.execute(_SETTLE_CONTEXT, params).first()
            if r is None:
                raise NotFound("no such reservation")
            if r.stale:
                # Expired holds of the period (maybe this one) are released first, as always.
                self._prepare_period_of(conn, r.period_id, now)
                r = conn.execute(_SETTLE_CONTEXT, params).one()
            if r.status == HELD:
                if used is not None and used > r.messages:
                    raise ValidationFailed(
                        f"used ({used}) is more than the {r.messages} message(s) reserved"
                    )
                counted, held, limit = conn.execute(
                    _LOCK_COUNTERS, {"period_id": r.period_id}
                ).one()
                # A concurrent settle of this reservation may have won since our read: the
                # conditional UPDATE finds it no longer held, and nothing was written yet.
                settled = conn.execute(
                    _SETTLE_RESERVATION,
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
                    _SETTLE_PERIOD,
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
            self._release(session, _lock_period(session, period_id), now)
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
