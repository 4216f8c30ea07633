"""When to retry a failed renewal, and which declines must never be retried.

Pure: no clock, no I/O. The dunning service asks :func:`next_retry_at` after each failure.

The schedule (setting ``billing_retry_days``, default ``1,3,5,7``) counts days from the FAILED
RENEWAL itself, not from the previous retry, so a late or slow retry never pushes the rest of the
schedule back: the whole schedule ends within 14 days (Stripe recommends retrying within two
weeks, docs.stripe.com/billing/revenue-recovery/smart-retries).

A hard decline is never retried (docs/billing.md, "Dunning schedule", names the sources of the
table): the card networks forbid reattempts after "issuer will never approve" answers and charge
for them, and retrying a stolen or revoked card only annoys the issuer. Everything else (no
money today, issuer unavailable, an unknown code) is soft and follows the schedule.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from enum import StrEnum
from itertools import pairwise

from .calendar import require_utc
from .declines import CLOUDPAYMENTS_HARD_REASONS as CLOUDPAYMENTS_HARD_DECLINES
from .declines import STRIPE_HARD_DECLINES

DEFAULT_RETRY_DAYS: tuple[int, ...] = (1, 3, 5, 7)
#: The last retry is at most this many days after the failed renewal.
MAX_RETRY_DAY = 14


class DeclineClass(StrEnum):
    HARD = "hard"
    SOFT = "soft"


def classify_decline(code: str | int | None) -> DeclineClass:
    """Hard (never retry) or soft (retry on the schedule). A number, or a string of digits, is
    a CloudPayments ``ReasonCode``; any other string a Stripe ``decline_code``. No code or an
    unknown one is soft: a decline we cannot read is retried within the schedule's bounds."""
    if code is None or isinstance(code, bool):
        return DeclineClass.SOFT
    if isinstance(code, int):
        hard = code in CLOUDPAYMENTS_HARD_DECLINES
    elif _is_number(code.strip()):
        hard = int(code.strip()) in CLOUDPAYMENTS_HARD_DECLINES
    else:
        hard = code.strip().lower() in STRIPE_HARD_DECLINES
    return DeclineClass.HARD if hard else DeclineClass.SOFT


def _is_number(text: str) -> bool:
    # ASCII only: str.isdigit() also says yes to "²", which int() refuses.
    return text.isascii() and text.isdigit()


def parse_retry_days(value: object) -> tuple[int, ...]:
    """``billing_retry_days`` read and checked: ``"1,3,5,7"`` (or a sequence of integers) →
    ``(1, 3, 5, 7)``; each a whole day from 1 to 14, strictly increasing. Empty: no retries."""
    if isinstance(value, str):
        parts = [part.strip() for part in value.split(",") if part.strip()]
        if not all(_is_number(part) for part in parts):
            raise ValueError("billing_retry_days: whole days separated by commas, e.g. 1,3,5,7")
        days = tuple(int(part) for part in parts)
    elif isinstance(value, Sequence) and all(
        isinstance(day, int) and not isinstance(day, bool) for day in value
    ):
        days = tuple(value)
    else:
        raise ValueError("billing_retry_days: whole days separated by commas, e.g. 1,3,5,7")
    if any(not 1 <= day <= MAX_RETRY_DAY for day in days):
        raise ValueError(f"billing_retry_days: each retry is 1 to {MAX_RETRY_DAY} days after")
    if any(later <= earlier for earlier, later in pairwise(days)):
        raise ValueError("billing_retry_days: the days must be strictly increasing")
    return days


def retry_schedule(failed_at: datetime, retry_days: Sequence[int]) -> tuple[datetime, ...]:
    """The times of every retry of a renewal that failed at ``failed_at``."""
    require_utc("failed_at", failed_at)
    days = parse_retry_days(retry_days)
    return tuple(failed_at + timedelta(days=day) for day in days)


def next_retry_at(
    *,
    failed_at: datetime,
    retries_done: int,
    retry_days: Sequence[int],
    decline_code: str | int | None,
) -> datetime | None:
    """When to retry next, after the renewal that failed at ``failed_at`` and ``retries_done``
    retries of it, the last of which was declined with ``decline_code``; ``None``: stop (a hard
    decline, or the schedule is spent) and let the subscription's grace decide."""
    if retries_done < 0:
        raise ValueError("retries_done must not be negative")
    schedule = retry_schedule(failed_at, retry_days)
    if classify_decline(decline_code) is DeclineClass.HARD or retries_done >= len(schedule):
        return None
    return schedule[retries_done]
