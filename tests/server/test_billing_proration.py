"""Proration of a plan change: integer minor units that add up exactly, to the second."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.protocol import ChangeDirection
from server_stub.services.billing.calendar import add_interval
from server_stub.services.billing.contract import Interval
from server_stub.services.billing.proration import (
    CHARGE_NEW_PERIOD,
    CHARGE_REMAINING_TIME,
    CREDIT_UNUSED_TIME,
    CurrencyMismatch,
    LineKind,
    OutsidePeriod,
    Proration,
    ProrationError,
    ScheduledChange,
    Settlement,
    prorate,
    refund_split,
    scheduled_change,
    split_amount,
)

UP, DOWN, SWITCH = (
    ChangeDirection.UPGRADE,
    ChangeDirection.DOWNGRADE,
    ChangeDirection.INTERVAL_CHANGE,
)
APRIL = (datetime(2026, 4, 1, tzinfo=UTC), datetime(2026, 5, 1, tzinfo=UTC))  # 30 days
SECOND = timedelta(seconds=1)

amounts = st.integers(min_value=0, max_value=10**9)


@st.composite
def changes(draw: st.DrawFn) -> tuple[datetime, datetime, datetime]:
    """A paid period (anchored month or year: leap years, month ends) and a time inside it."""
    anchor = draw(
        st.datetimes(
            min_value=datetime(2000, 1, 1),
            max_value=datetime(2099, 12, 31),
            timezones=st.just(UTC),
        )
    )
    interval = draw(st.sampled_from([Interval.MONTH, Interval.YEAR]))
    k = draw(st.integers(min_value=0, max_value=30))
    start, end = add_interval(anchor, interval, k), add_interval(anchor, interval, k + 1)
    at = draw(
        st.one_of(
            st.just(start),
            st.just(end - SECOND),
            st.just(end - timedelta(microseconds=1)),
            st.datetimes(
                min_value=start.replace(tzinfo=None),
                max_value=(end - timedelta(microseconds=1)).replace(tzinfo=None),
                timezones=st.just(UTC),
            ),
        )
    )
    return start, end, at


def _prorate(old: int, new: int, start: datetime, end: datetime, at: datetime, **kw: Any) -> Any:
    kw.setdefault("direction", UP)
    return prorate(
        old_amount_minor=old,
        new_amount_minor=new,
        currency="RUB",
        period_start=start,
        period_end=end,
        at=at,
        **kw,
    )


# Worked examples: each figure below was computed by hand, not by the code under test.


def test_upgrade_on_day_10_of_a_30_day_month() -> None:
    # 1 000.00 RUB a month → 3 000.00 RUB a month on April 10, 00:00 UTC: 9 of April's 30 days
    # are used, 21 are left. Credit 1 000.00 × 21/30 = 700.00; charge 3 000.00 × 21/30 =
    # 2 100.00; to pay now 1 400.00.
    p = _prorate(100_000, 300_000, *APRIL, datetime(2026, 4, 10, tzinfo=UTC))
    assert (p.credit_minor, p.charge_minor, p.net_minor) == (70_000, 210_000, 140_000)
    assert p.settlement is Settlement.INVOICE and p.direction is UP
    charge, credit = p.lines
    assert (charge.kind, charge.amount_minor, charge.seconds) == (
        LineKind.PRORATION_CHARGE,
        210_000,
        21 * 86_400,
    )
    assert (credit.kind, credit.amount_minor, credit.seconds) == (
        LineKind.PRORATION_CREDIT,
        -70_000,
        21 * 86_400,
    )
    assert charge.period_start == credit.period_start == datetime(2026, 4, 10, tzinfo=UTC)
    assert charge.period_end == credit.period_end == p.period_end == APRIL[1]
    assert (charge.description_key, credit.description_key) == (
        CHARGE_REMAINING_TIME,
        CREDIT_UNUSED_TIME,
    )


def test_upgrade_to_the_second_rounds_to_the_nearest_kopeck() -> None:
    # The same change at 12:34:56: used 9 d + 45 296 s = 822 896 s of 2 592 000 s; unused
    # 1 769 104 s. Credit 100 000 × 1 769 104 / 2 592 000 = 68 252.469… → 68 252 kopecks;
    # charge 300 000 × 1 769 104 / 2 592 000 = 204 757.407… → 204 757; net 136 505.
    at = datetime(2026, 4, 10, 12, 34, 56, tzinfo=UTC)
    p = _prorate(100_000, 300_000, *APRIL, at)
    assert (p.credit_minor, p.charge_minor, p.net_minor) == (68_252, 204_757, 136_505)
    assert p.lines[0].seconds == 1_769_104
    # The operator's "refund the unused part" at that second is the same split.
    assert refund_split(100_000, *APRIL, at) == (31_748, 68_252)


def test_immediate_downgrade_is_a_credit_note() -> None:
    # 3 000.00 → 1 000.00 on April 10: credit 2 100.00, charge 700.00, 1 400.00 credited.
    p = _prorate(300_000, 100_000, *APRIL, datetime(2026, 4, 10, tzinfo=UTC), direction=DOWN)
    assert (p.credit_minor, p.charge_minor, p.net_minor) == (210_000, 70_000, -140_000)
    assert p.settlement is Settlement.CREDIT_NOTE and p.direction is DOWN


def test_yearly_to_monthly_credits_the_unused_year_and_charges_a_full_month() -> None:
    # 12 000.00 RUB a year (2026, 365 days) → 1 500.00 RUB a month on July 1: 181 days used,
    # 184 left. Credit 1 200 000 × 184/365 = 604 931.506… → 604 932; charge the full month
    # 150 000; net −454 932 (a credit note). lago-api #1834 called this an upgrade by daily
    # price; here it is what the caller said.
    year = (datetime(2026, 1, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC))
    july = datetime(2026, 7, 1, tzinfo=UTC)
    p = _prorate(1_200_000, 150_000, *year, july, direction=SWITCH, new_interval=Interval.MONTH)
    assert (p.credit_minor, p.charge_minor, p.net_minor) == (604_932, 150_000, -454_932)
    assert p.direction is SWITCH and p.settlement is Settlement.CREDIT_NOTE
    charge, credit = p.lines
    assert (charge.period_start, charge.period_end) == (july, datetime(2026, 8, 1, tzinfo=UTC))
    assert (charge.seconds, charge.description_key) == (31 * 86_400, CHARGE_NEW_PERIOD)
    assert (credit.period_end, credit.seconds) == (year[1], 184 * 86_400)
    assert p.period_end == datetime(2026, 8, 1, tzinfo=UTC)


def test_monthly_to_yearly_starts_a_new_year_at_the_change() -> None:
    # 1 000.00 a month → 10 000.00 a year on April 10: credit 700.00, charge 10 000.00.
    at = datetime(2026, 4, 10, tzinfo=UTC)
    p = _prorate(100_000, 1_000_000, *APRIL, at, direction=SWITCH, new_interval=Interval.YEAR)
    assert (p.credit_minor, p.charge_minor, p.net_minor) == (70_000, 1_000_000, 930_000)
    assert p.period_end == datetime(2027, 4, 10, tzinfo=UTC)
    assert p.lines[0].seconds == 365 * 86_400


def test_a_half_kopeck_goes_to_the_unused_share() -> None:
    # 3 kopecks for 2 seconds, changed after 1: the unused share is 1.5 → 2, the used 1.
    start = datetime(2026, 4, 1, tzinfo=UTC)
    assert split_amount(3, 2, 1) == (1, 2)
    assert refund_split(3, start, start + 2 * SECOND, start + SECOND) == (1, 2)
    assert split_amount(1, 3, 1) == (1, 0)  # 0.33… → 0
    assert split_amount(2, 3, 1) == (1, 1)  # 0.66… → 1


def test_edges_at_start_and_one_second_before_the_end() -> None:
    start, end = APRIL
    at_start = _prorate(100_000, 300_000, start, end, start)
    assert (at_start.credit_minor, at_start.charge_minor) == (100_000, 300_000)
    assert at_start.lines[0].seconds == 30 * 86_400
    last = _prorate(100_000, 300_000, start, end, end - SECOND)
    # One second of 2 592 000 left: 0.038… and 0.115… kopecks round to nothing.
    assert (last.credit_minor, last.charge_minor, last.net_minor) == (0, 0, 0)
    assert last.lines == () and last.settlement is Settlement.NONE
    # A started second is not used yet: 0.5 s before the end still has one second left.
    half = _prorate(10**9, 10**9, start, end, end - SECOND / 2)
    assert half.credit_minor == half.charge_minor == 386  # 10^9 / 2 592 000 = 385.8…


def test_free_plan_upgrade_has_no_credit_line() -> None:
    p = _prorate(0, 300_000, *APRIL, datetime(2026, 4, 10, tzinfo=UTC))
    assert [line.kind for line in p.lines] == [LineKind.PRORATION_CHARGE]
    assert p.net_minor == 210_000


# Properties over arbitrary amounts, periods and seconds.


@settings(deadline=None)
@given(old=amounts, new=amounts, change=changes())
def test_lines_add_up_to_the_net_and_the_old_price_is_never_split_wrong(
    old: int, new: int, change: tuple[datetime, datetime, datetime]
) -> None:
    start, end, at = change
    p = _prorate(old, new, start, end, at)
    assert (
        sum(line.amount_minor for line in p.lines) == p.net_minor == p.charge_minor - p.credit_minor
    )
    consumed, unused = refund_split(old, start, end, at)
    assert unused == p.credit_minor and consumed + p.credit_minor == old
    new_consumed, new_unused = refund_split(new, start, end, at)
    assert new_unused == p.charge_minor and new_consumed + p.charge_minor == new
    assert 0 <= p.credit_minor <= old and 0 <= p.charge_minor <= new
    total = (end - start) // SECOND
    seconds = total - (at - start) // SECOND
    assert 1 <= seconds <= total
    # Within half a kopeck of the exact share: |credit − old·s/t| ≤ 1/2.
    assert abs(2 * total * p.credit_minor - 2 * old * seconds) <= total
    assert abs(2 * total * p.charge_minor - 2 * new * seconds) <= total
    for line in p.lines:
        assert line.amount_minor != 0 and line.seconds == seconds
        assert (line.period_start, line.period_end) == (at, end)
        assert (line.amount_minor < 0) == (line.kind is LineKind.PRORATION_CREDIT)


@settings(deadline=None)
@given(old=amounts, new=amounts, change=changes())
def test_direction_is_carried_never_inferred(
    old: int, new: int, change: tuple[datetime, datetime, datetime]
) -> None:
    up = _prorate(old, new, *change, direction=UP)
    down = _prorate(old, new, *change, direction="downgrade")
    assert (up.direction, down.direction) == (UP, DOWN)
    # The money does not depend on what the caller called the change, and the document
    # follows the money's sign.
    assert (up.credit_minor, up.charge_minor, up.lines) == (
        down.credit_minor,
        down.charge_minor,
        down.lines,
    )
    expected = (
        Settlement.INVOICE
        if up.net_minor > 0
        else Settlement.CREDIT_NOTE
        if up.net_minor < 0
        else Settlement.NONE
    )
    assert up.settlement is down.settlement is expected


@settings(deadline=None)
@given(old=amounts, delta=st.integers(min_value=0, max_value=10**9), change=changes())
def test_same_rule_for_both_prices_so_dearer_never_nets_a_credit(
    old: int, delta: int, change: tuple[datetime, datetime, datetime]
) -> None:
    same = _prorate(old, old, *change)
    assert same.net_minor == 0 and same.settlement is Settlement.NONE
    assert _prorate(old, old + delta, *change).net_minor >= 0
    assert _prorate(old + delta, old, *change, direction=DOWN).net_minor <= 0


@settings(deadline=None)
@given(
    old=amounts,
    new=amounts,
    change=changes(),
    interval=st.sampled_from([Interval.MONTH, Interval.YEAR]),
)
def test_interval_change_charges_the_full_new_price(
    old: int, new: int, change: tuple[datetime, datetime, datetime], interval: Interval
) -> None:
    start, end, at = change
    p = _prorate(old, new, start, end, at, direction=SWITCH, new_interval=interval)
    assert p.charge_minor == new and p.credit_minor == refund_split(old, start, end, at)[1]
    assert sum(line.amount_minor for line in p.lines) == p.net_minor == new - p.credit_minor
    assert p.period_end == add_interval(at, interval) and p.effective_at == at
    for line in p.lines:
        if line.kind is LineKind.PRORATION_CHARGE:
            assert (line.period_start, line.period_end) == (at, p.period_end)
            assert line.seconds == (p.period_end - at) // SECOND


@settings(deadline=None)
@given(paid=amounts, change=changes())
def test_refund_split_adds_up_and_moves_one_way(
    paid: int, change: tuple[datetime, datetime, datetime]
) -> None:
    start, end, at = change
    used, unused = refund_split(paid, start, end, at)
    assert used + unused == paid and used >= 0 and unused >= 0
    # A later second never leaves more unused.
    later = min(at + timedelta(days=1), end - timedelta(microseconds=1))
    assert refund_split(paid, start, end, later)[1] <= unused


# Refusals.


def test_time_outside_the_period_is_refused() -> None:
    start, end = APRIL
    for at in (start - timedelta(microseconds=1), end, end + SECOND):
        with pytest.raises(OutsidePeriod):
            _prorate(1, 2, start, end, at)
    with pytest.raises(ProrationError, match="at least one second"):
        _prorate(1, 2, start, start, start)
    with pytest.raises(ProrationError):
        _prorate(1, 2, end, start, start)


def test_a_refund_may_come_before_or_after_the_period() -> None:
    start, end = APRIL
    assert refund_split(100_000, start, end, start - timedelta(days=3)) == (0, 100_000)
    assert refund_split(100_000, start, end, end) == (100_000, 0)
    assert refund_split(100_000, start, end, end + timedelta(days=40)) == (100_000, 0)
    with pytest.raises(ProrationError, match="at least one second"):
        refund_split(1, end, start, start)


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        _prorate(1, 2, *APRIL, datetime(2026, 4, 10))
    with pytest.raises(ValueError, match="naive"):
        refund_split(1, APRIL[0].replace(tzinfo=None), APRIL[1], APRIL[0])
    with pytest.raises(ValueError, match="naive"):
        refund_split(1, APRIL[0], APRIL[1].replace(tzinfo=None), APRIL[0])
    with pytest.raises(ValueError, match="naive"):
        refund_split(1, *APRIL, datetime(2026, 4, 10))


@pytest.mark.parametrize("amount", [-1, True, 1.5, "100"])
def test_bad_amounts_are_refused(amount: Any) -> None:
    at = datetime(2026, 4, 10, tzinfo=UTC)
    with pytest.raises(ProrationError):
        _prorate(amount, 1, *APRIL, at)
    with pytest.raises(ProrationError):
        _prorate(1, amount, *APRIL, at)
    with pytest.raises(ProrationError):
        refund_split(amount, *APRIL, at)


def test_currencies_must_match_and_be_iso_codes() -> None:
    at = datetime(2026, 4, 10, tzinfo=UTC)
    with pytest.raises(CurrencyMismatch):
        _prorate(1, 2, *APRIL, at, new_currency="USD")
    assert _prorate(1, 2, *APRIL, at, new_currency="RUB").currency == "RUB"
    for bad in ("rub", "RU", "RUBL", ""):
        with pytest.raises(ProrationError, match="ISO 4217"):
            prorate(
                old_amount_minor=1,
                new_amount_minor=2,
                currency=bad,
                period_start=APRIL[0],
                period_end=APRIL[1],
                at=at,
                direction=UP,
            )


def test_interval_and_direction_must_agree() -> None:
    at = datetime(2026, 4, 10, tzinfo=UTC)
    with pytest.raises(ProrationError, match="new interval"):
        _prorate(1, 2, *APRIL, at, direction=SWITCH)
    with pytest.raises(ProrationError, match="keeps its interval"):
        _prorate(1, 2, *APRIL, at, direction=UP, new_interval=Interval.YEAR)
    with pytest.raises(ValueError):
        _prorate(1, 2, *APRIL, at, direction="sidegrade")


def test_a_proration_that_does_not_add_up_cannot_be_built() -> None:
    p = _prorate(100_000, 300_000, *APRIL, datetime(2026, 4, 10, tzinfo=UTC))
    with pytest.raises(ProrationError, match="lines"):
        Proration(**{**p.__dict__, "lines": p.lines[:1], "net_minor": p.net_minor})
    with pytest.raises(ProrationError, match="net"):
        Proration(**{**p.__dict__, "net_minor": p.net_minor + 1})


# At period end: no proration.


def test_change_at_period_end_is_scheduled_without_proration() -> None:
    assert scheduled_change(
        direction=DOWN, period_end=APRIL[1], new_amount_minor=100_000, currency="RUB"
    ) == ScheduledChange(
        direction=DOWN, effective_at=APRIL[1], new_amount_minor=100_000, currency="RUB"
    )
    assert (
        scheduled_change(
            direction="upgrade",  # type: ignore[arg-type]
            period_end=APRIL[1],
            new_amount_minor=0,
            currency="USD",
        ).direction
        is UP
    )
    with pytest.raises(ProrationError):
        scheduled_change(direction=UP, period_end=APRIL[1], new_amount_minor=-1, currency="RUB")
    with pytest.raises(ProrationError, match="ISO 4217"):
        scheduled_change(direction=UP, period_end=APRIL[1], new_amount_minor=1, currency="rub")
    with pytest.raises(ValueError, match="naive"):
        scheduled_change(
            direction=UP, period_end=datetime(2026, 5, 1), new_amount_minor=1, currency="RUB"
        )
