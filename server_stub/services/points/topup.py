"""Buying messages with points (seed 001's ``POST /usage/topup``): points leave the wallet and
the current usage period's quota grows by ``points × the plan's rate``, in ONE transaction, so
neither can happen without the other.

Lock order: the wallet, then the usage period (usage reservations lock only the period, so no
cycle can form). The period's counters keep their CHECK (``used + held <= quota_limit``): a
top-up only raises the limit.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ...db import transaction
from ...errors import IdempotencyConflict, LicenseInactive, ValidationFailed
from ...models import UsagePeriod
from ...points_models import PointsWallet
from ..periods import active_plan, current_period, remaining
from .common import WalletBase
from .ledger import Kind, Posting, keyed, legs_of, lock_wallet, post, request_hash, take_lots
from .views import Entry, Outcome, balance_of, check_amount, entry_of

#: The most points one top-up may convert (a period's counter is a 32-bit integer).
MAX_TOPUP_POINTS = 1_000_000
_COUNTER_MAX = 2**31 - 1


@dataclass(frozen=True)
class Topup:
    outcome: Outcome
    messages: int
    #: The period's quota after the top-up: its limit, what remains, and when it ends.
    quota_limit: int
    quota_remaining: int
    period_end: datetime


class TopupMixin(WalletBase):
    def topup(self, user_id: str, points: int, *, idempotency_key: str) -> Topup:
        """Convert ``points`` into extra messages of the current period, once per key.
        No license: ``license_inactive``; a plan that sells no messages, or a quota that would
        overflow: 422; too few points: ``insufficient_points``."""
        check_amount(points)
        if points > MAX_TOPUP_POINTS:
            raise ValidationFailed(f"a top-up converts at most {MAX_TOPUP_POINTS} points")
        now = self._now
        digest = request_hash(kind=Kind.TOPUP, amount=points)
        with transaction(self._ctx.write) as session:
            wallet = lock_wallet(session, user_id, now)
            active = active_plan(session, user_id, now)
            if active is None:
                raise LicenseInactive("no active license to add messages to")
            done = keyed(session, user_id, idempotency_key)
            if done is not None:
                if done.kind != Kind.TOPUP or done.request_hash != digest:
                    raise IdempotencyConflict("the idempotency key was used for another request")
                period = current_period(session, active, now, lock=False)
                return self._answer(entry_of(done), wallet, done.messages or 0, period, True)
            rate = active.plan.topup_messages_per_point
            if rate <= 0:
                raise ValidationFailed(f"the plan {active.plan.name!r} sells no extra messages")
            messages = points * rate
            period = current_period(session, active, now, lock=True)
            if period.quota_limit + messages > _COUNTER_MAX:
                raise ValidationFailed("the period's quota cannot grow that far")
            self._require(wallet, points)
            take_lots(session, user_id, points)
            tx = post(
                session,
                wallet,
                Posting(
                    Kind.TOPUP,
                    points,
                    legs_of(Kind.TOPUP, points),
                    f"user:{user_id}",
                    f"{messages} extra messages until {period.period_end.date().isoformat()}",
                    idempotency_key,
                    digest,
                ),
                now,
            )
            tx.messages = messages
            period.quota_limit += messages
            session.flush()
            return self._answer(entry_of(tx), wallet, messages, period, False)

    @staticmethod
    def _answer(
        entry: Entry, wallet: PointsWallet, messages: int, period: UsagePeriod, replayed: bool
    ) -> Topup:
        return Topup(
            Outcome(entry, balance_of(wallet), replayed),
            messages,
            period.quota_limit,
            remaining(period),
            period.period_end,
        )
