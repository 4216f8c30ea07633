"""Anchored calendar periods: month-end clamping that never drifts, leap days, UTC only."""

from __future__ import annotations

import calendar as stdlib_calendar
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server_stub.services.billing.calendar import (
    add_interval,
    period_containing,
    period_index,
)
from server_stub.services.billing.contract import Interval
from server_stub.services.periods import period_bounds

MONTH, YEAR = Interval.MONTH, Interval.YEAR

anchors = st.datetimes(
    min_value=datetime(1990, 1, 1), max_value=datetime(2100, 12, 31), timezones=st.just(UTC)
)
intervals = st.sampled_from([MONTH, YEAR])


def _utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def test_month_end_anchor_comes_back_to_the_31st() -> None:
    anchor = _utc(2026, 1, 31, 10, 30)
    assert [add_interval(anchor, MONTH, n) for n in range(1, 5)] == [
        _utc(2026, 2, 28, 10, 30),
        _utc(2026, 3, 31, 10, 30),  # not Mar 28: boundaries come from the anchor
        _utc(2026, 4, 30, 10, 30),
        _utc(2026, 5, 31, 10, 30),
    ]
    # A leap year's February clamps to the 29th.
    assert add_interval(_utc(2028, 1, 31), MONTH) == _utc(2028, 2, 29)
    # Stepping from a clamped boundary WOULD drift; that is why nothing steps from one.
    assert add_interval(add_interval(anchor, MONTH), MONTH) == _utc(2026, 3, 28, 10, 30)


def test_leap_day_yearly_anchor() -> None:
    anchor = _utc(2028, 2, 29, 12)
    assert [add_interval(anchor, YEAR, n) for n in range(5)] == [
        anchor,
        _utc(2029, 2, 28, 12),
        _utc(2030, 2, 28, 12),
        _utc(2031, 2, 28, 12),
        _utc(2032, 2, 29, 12),
    ]
    assert add_interval(anchor, YEAR, -1) == _utc(2027, 2, 28, 12)
    assert add_interval(anchor, YEAR, 100) == _utc(2128, 2, 29, 12)
    # 2100 is not a leap year (divisible by 100, not by 400).
    assert add_interval(anchor, YEAR, 72) == _utc(2100, 2, 28, 12)


def test_period_containing_at_month_ends() -> None:
    anchor = _utc(2026, 1, 31, 10)
    assert period_containing(anchor, MONTH, _utc(2026, 3, 1)) == (
        _utc(2026, 2, 28, 10),
        _utc(2026, 3, 31, 10),
    )
    # The boundary itself opens the next period: [start, end).
    assert period_containing(anchor, MONTH, _utc(2026, 3, 31, 10)) == (
        _utc(2026, 3, 31, 10),
        _utc(2026, 4, 30, 10),
    )
    assert period_containing(anchor, MONTH, _utc(2026, 3, 31, 9, 59, 59)) == (
        _utc(2026, 2, 28, 10),
        _utc(2026, 3, 31, 10),
    )
    # Before the anchor the periods go on backwards, anchored the same way.
    assert period_containing(anchor, MONTH, _utc(2025, 12, 31, 9)) == (
        _utc(2025, 11, 30, 10),
        _utc(2025, 12, 31, 10),
    )
    assert period_containing(_utc(2028, 2, 29), YEAR, _utc(2030, 1, 1)) == (
        _utc(2029, 2, 28),
        _utc(2030, 2, 28),
    )


@settings(deadline=None)
@given(anchor=anchors, interval=intervals, n=st.integers(min_value=-120, max_value=120))
def test_boundary_n_keeps_the_anchor_day_clamped_and_time_of_day(
    anchor: datetime, interval: Interval, n: int
) -> None:
    boundary = add_interval(anchor, interval, n)
    months = n if interval is MONTH else 12 * n
    total = anchor.year * 12 + anchor.month - 1 + months
    year, month = divmod(total, 12)
    last_day = stdlib_calendar.monthrange(year, month + 1)[1]
    assert (boundary.year, boundary.month) == (year, month + 1)
    assert boundary.day == min(anchor.day, last_day)
    assert boundary.timetz() == anchor.timetz()
    assert boundary.tzinfo is anchor.tzinfo


@settings(deadline=None)
@given(anchor=anchors, interval=intervals, offset=st.integers(-(10**9), 10**9))
def test_period_containing_is_the_anchored_period_around_at(
    anchor: datetime, interval: Interval, offset: int
) -> None:
    at = anchor + timedelta(seconds=offset, microseconds=offset % 1_000_000)
    start, end = period_containing(anchor, interval, at)
    k = period_index(anchor, interval, at)
    assert start <= at < end
    assert (start, end) == (
        add_interval(anchor, interval, k),
        add_interval(anchor, interval, k + 1),
    )
    # Contiguous: the next period starts exactly where this one ends.
    assert period_containing(anchor, interval, end)[0] == end
    assert period_containing(anchor, interval, start) == (start, end)
    if interval is MONTH:
        assert period_bounds(anchor, at) == (start, end)


@pytest.mark.parametrize("interval", [MONTH, YEAR])
def test_naive_and_non_utc_times_are_refused(interval: Interval) -> None:
    naive = datetime(2026, 1, 31, 10)
    with pytest.raises(ValueError, match="naive"):
        add_interval(naive, interval)
    with pytest.raises(ValueError, match="naive"):
        period_containing(_utc(2026, 1, 1), interval, naive)
    moscow = datetime(2026, 1, 31, 1, tzinfo=ZoneInfo("Europe/Moscow"))
    with pytest.raises(ValueError, match="UTC"):
        add_interval(moscow, interval)
    with pytest.raises(ValueError, match="UTC"):
        period_containing(moscow, interval, _utc(2026, 3, 1))
    # Another spelling of UTC is UTC.
    zero = datetime(2026, 1, 31, tzinfo=timezone(timedelta(0)))
    assert add_interval(zero, interval) > zero
    assert add_interval(datetime(2026, 1, 31, tzinfo=ZoneInfo("UTC")), interval) > zero


def test_unknown_interval_is_refused() -> None:
    with pytest.raises(ValueError):
        add_interval(_utc(2026, 1, 1), "week")  # type: ignore[arg-type]
