"""Anchored calendar periods: the one home for "a month (or a year) from this anchor".

A subscription started on Jan 31 renews on Feb 28 (Feb 29 in a leap year), then on Mar 31, not
on Mar 28: every period boundary is computed from the ORIGINAL anchor (anchor + k months), never
from the previous boundary, so month-end clamping never drifts. A yearly anchor on Feb 29 falls on
Feb 28 in common years and comes back to Feb 29 in leap years for the same reason.

Pure: no clock, no I/O. Times are aware UTC datetimes only (a naive one, or one in another zone,
is refused): a calendar month in Moscow time starts on another day than in UTC near midnight.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from dateutil.relativedelta import relativedelta

from .contract import Interval

_ZERO = timedelta(0)


def require_utc(name: str, value: datetime) -> None:
    """Refuse (``ValueError``) a naive datetime or one whose offset from UTC is not zero."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be an aware UTC datetime, not a naive one")
    if value.utcoffset() != _ZERO:
        raise ValueError(f"{name} must be in UTC (its offset is {value.utcoffset()})")


def _step(interval: Interval, n: int) -> relativedelta:
    if interval is Interval.MONTH:
        return relativedelta(months=n)
    if interval is Interval.YEAR:
        return relativedelta(years=n)
    raise ValueError(f"unknown interval {interval!r}")


def add_interval(anchor: datetime, interval: Interval, n: int = 1) -> datetime:
    """The ``n``-th boundary after ``anchor`` (``n`` may be 0 or negative): ``anchor`` plus ``n``
    calendar months or years, with the day clamped to the month's last day when the month is
    shorter. Boundary ``n`` is always computed from ``anchor`` itself, so clamping never drifts.
    """
    require_utc("anchor", anchor)
    return anchor + _step(Interval(interval), n)


def _bounds(anchor: datetime, interval: Interval, at: datetime) -> tuple[int, datetime, datetime]:
    """``(k, start, end)`` of the period that contains ``at`` (two date additions when the
    estimate is right, as it almost always is: the quota's hot path asks on every request)."""
    require_utc("anchor", anchor)
    require_utc("at", at)
    if interval is Interval.MONTH:
        k = (at.year - anchor.year) * 12 + (at.month - anchor.month)
    else:
        k = at.year - anchor.year
    # The estimate counts calendar months (years) only; the anchor's day and time of day can put
    # ``at`` one period earlier (the first loop); the second only guards start <= at < end.
    # Every boundary is computed from the anchor.
    start = anchor + _step(interval, k)
    while start > at:
        k -= 1
        start = anchor + _step(interval, k)
    end = anchor + _step(interval, k + 1)
    while end <= at:
        k += 1
        start, end = end, anchor + _step(interval, k + 1)
    return k, start, end


def period_index(anchor: datetime, interval: Interval, at: datetime) -> int:
    """The ``k`` for which ``add_interval(anchor, interval, k) <= at < ... k + 1`` (negative
    before the anchor)."""
    return _bounds(anchor, Interval(interval), at)[0]


def period_containing(
    anchor: datetime, interval: Interval, at: datetime
) -> tuple[datetime, datetime]:
    """The anchored period ``[start, end)`` that contains ``at``. The end is computed from the
    anchor too: ``start + 1 month`` would drift after a clamped start (Feb 28 + 1 month =
    Mar 28, where the anchor Jan 31 says Mar 31)."""
    _, start, end = _bounds(anchor, Interval(interval), at)
    return start, end
