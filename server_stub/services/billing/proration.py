"""The arithmetic of a plan change inside a paid period: credits, charges and refund splits.

Pure: no database, no I/O, the time of the change is a parameter. Money is integer minor units.

The one rounding rule (docs/billing.md, "Proration"): an amount paid for ``[start, end)`` splits at
``at`` into a *used* part and an *unused* part, counted in whole seconds (a second is used once it
has fully passed). The unused part is ``amount * unused_seconds / period_seconds`` rounded to the
nearest minor unit, halves up; the used part is the rest. So ``used + unused == amount`` exactly
(no kopeck is created or lost), each part is within half a minor unit of the exact share, and the
same rule prices the credit for the old plan and the charge for the new one: a change between two
plans at the same price nets exactly zero, and a dearer new plan never nets a credit.

The direction of a change is stated by the caller from the plans' ranks and only carried here:
nothing in this module compares prices to decide whether a change is an upgrade (lago-api #1834
counted annual→monthly as an upgrade because of its daily price).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from agent.protocol import ChangeDirection

from .calendar import add_interval, require_utc
from .contract import Interval

SECOND = timedelta(seconds=1)
_TINY = timedelta(microseconds=1)


class LineKind(StrEnum):
    PRORATION_CREDIT = "proration_credit"
    PRORATION_CHARGE = "proration_charge"


class Settlement(StrEnum):
    """What document the net of a change becomes. It follows the sign of the money, never the
    direction: a rank-upgrade to a cheaper price is a credit note, not a negative invoice."""

    #: Net > 0: an invoice with the charge and credit lines, to pay now.
    INVOICE = "invoice"
    #: Net < 0: a credit note the customer sees, carried to the next invoice.
    CREDIT_NOTE = "credit_note"
    #: Net = 0: nothing to pay or credit (the lines may still be shown).
    NONE = "none"


#: Description keys of the lines (the caller renders them with the plans' names).
CREDIT_UNUSED_TIME = "proration.credit.unused_time"
CHARGE_REMAINING_TIME = "proration.charge.remaining_time"
CHARGE_NEW_PERIOD = "proration.charge.new_period"

_CURRENCY = re.compile(r"[A-Z]{3}")


class ProrationError(ValueError):
    """The inputs of a proration are not a valid plan change (a caller's bug or a refusal)."""


class OutsidePeriod(ProrationError):
    """The change's time is not inside the paid period ``[start, end)``."""


class CurrencyMismatch(ProrationError):
    """The old and new prices are in different currencies: nothing can be netted."""


@dataclass(frozen=True)
class ProrationLine:
    kind: LineKind
    #: Signed: a credit is negative, a charge positive.
    amount_minor: int
    period_start: datetime
    period_end: datetime
    #: The whole seconds of ``[period_start, period_end)`` that this line prices.
    seconds: int
    description_key: str


@dataclass(frozen=True)
class Proration:
    direction: ChangeDirection
    currency: str
    #: The unused part of the old price, credited (>= 0).
    credit_minor: int
    #: What the new plan costs from the change on (>= 0).
    charge_minor: int
    #: ``charge - credit``: positive is to pay now, negative is a credit note.
    net_minor: int
    #: Zero-amount lines are left out; the amounts of the lines add up to ``net_minor``.
    lines: tuple[ProrationLine, ...]
    #: When the new plan takes effect (the change's time).
    effective_at: datetime
    #: Where the new plan's current period ends: the old period's end, or for an interval
    #: change the end of a new period that starts at ``effective_at`` (the new anchor).
    period_end: datetime

    def __post_init__(self) -> None:
        # Cheap enough to check always: a Proration that does not add up cannot exist.
        if self.net_minor != self.charge_minor - self.credit_minor:
            raise ProrationError("net must be charge minus credit")
        if sum(line.amount_minor for line in self.lines) != self.net_minor:
            raise ProrationError("the lines must add up to the net")

    @property
    def settlement(self) -> Settlement:
        if self.net_minor > 0:
            return Settlement.INVOICE
        if self.net_minor < 0:
            return Settlement.CREDIT_NOTE
        return Settlement.NONE


@dataclass(frozen=True)
class ScheduledChange:
    """A change at period end: no proration; the renewal at ``effective_at`` bills the new plan
    at its full price."""

    direction: ChangeDirection
    effective_at: datetime
    new_amount_minor: int
    currency: str


def _require_amount(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ProrationError(f"{name} must be an integer number of minor units")
    if value < 0:
        raise ProrationError(f"{name} must not be negative")


def _require_currency(currency: str) -> None:
    if not isinstance(currency, str) or not _CURRENCY.fullmatch(currency):
        raise ProrationError("currency must be an ISO 4217 code: three capital letters")


def _seconds(period_start: datetime, period_end: datetime, at: datetime) -> tuple[int, int]:
    """``(period_seconds, unused_seconds)`` of a change at ``at``, after checking the times."""
    require_utc("period_start", period_start)
    require_utc("period_end", period_end)
    require_utc("at", at)
    total = (period_end - period_start) // SECOND
    if total < 1:
        raise ProrationError("the period must last at least one second")
    if not period_start <= at < period_end:
        raise OutsidePeriod(f"{at.isoformat()} is outside the period [start, end)")
    # Floor: a second is used only once it has fully passed; the started one is still unused.
    return total, total - (at - period_start) // SECOND


def split_amount(amount_minor: int, period_seconds: int, unused_seconds: int) -> tuple[int, int]:
    """``(used, unused)`` of an amount paid for ``period_seconds``, ``unused_seconds`` of which
    are left: the unused share rounded to the nearest minor unit (halves up), the used share the
    rest, so the two add up to ``amount_minor`` exactly."""
    _require_amount("amount_minor", amount_minor)
    if period_seconds < 1 or not 0 <= unused_seconds <= period_seconds:
        raise ProrationError("unused seconds must lie within the period")
    # round(a * u / t) with halves up, in integers: floor((2au + t) / 2t).
    unused = (2 * amount_minor * unused_seconds + period_seconds) // (2 * period_seconds)
    return amount_minor - unused, unused


def refund_split(
    paid_minor: int, period_start: datetime, period_end: datetime, at: datetime
) -> tuple[int, int]:
    """``(used_minor, unused_minor)`` of ``paid_minor`` paid for ``[period_start, period_end)``
    at ``at``, by the same rule as a proration's credit (what an operator refunds as "the unused
    part" is exactly what a downgrade at that second would have credited). Unlike a plan change,
    a refund may come at any time: before the period nothing is used, from its end on all is."""
    for name, value in (("period_start", period_start), ("period_end", period_end), ("at", at)):
        require_utc(name, value)
    # Before the period, as at its start; from its end on, as at its last second with nothing
    # left (the times and the period are checked by _seconds either way).
    total, unused = _seconds(
        period_start, period_end, min(max(at, period_start), period_end - _TINY)
    )
    return split_amount(paid_minor, total, 0 if at >= period_end else unused)


def prorate(
    *,
    old_amount_minor: int,
    new_amount_minor: int,
    currency: str,
    period_start: datetime,
    period_end: datetime,
    at: datetime,
    direction: ChangeDirection,
    new_currency: str | None = None,
    new_interval: Interval | None = None,
) -> Proration:
    """The money of an immediate plan change at ``at`` inside the paid period
    ``[period_start, period_end)`` of the old plan (price ``old_amount_minor``).

    Upgrade or downgrade: the period stays; the unused part of the old price is credited and the
    same part of the new price is charged. Interval change (``new_interval`` required): the new
    plan's period starts at ``at``; the unused part of the old price is credited and the full new
    price is charged. ``new_currency`` (default ``currency``) must equal ``currency``.
    """
    direction = ChangeDirection(direction)
    _require_amount("old_amount_minor", old_amount_minor)
    _require_amount("new_amount_minor", new_amount_minor)
    _require_currency(currency)
    if new_currency is not None and new_currency != currency:
        raise CurrencyMismatch(f"the new price is in {new_currency!r}, the paid one in {currency}")
    total, unused = _seconds(period_start, period_end, at)
    _, credit = split_amount(old_amount_minor, total, unused)
    credit_line = ProrationLine(
        kind=LineKind.PRORATION_CREDIT,
        amount_minor=-credit,
        period_start=at,
        period_end=period_end,
        seconds=unused,
        description_key=CREDIT_UNUSED_TIME,
    )
    if direction is ChangeDirection.INTERVAL_CHANGE:
        if new_interval is None:
            raise ProrationError("an interval change needs the new interval")
        new_end = add_interval(at, Interval(new_interval))
        charge = new_amount_minor
        charge_seconds, charge_key = (new_end - at) // SECOND, CHARGE_NEW_PERIOD
    else:
        if new_interval is not None:
            raise ProrationError("an upgrade or downgrade keeps its interval")
        new_end = period_end
        charge = split_amount(new_amount_minor, total, unused)[1]
        charge_seconds, charge_key = unused, CHARGE_REMAINING_TIME
    charge_line = ProrationLine(
        kind=LineKind.PRORATION_CHARGE,
        amount_minor=charge,
        period_start=at,
        period_end=new_end,
        seconds=charge_seconds,
        description_key=charge_key,
    )
    return Proration(
        direction=direction,
        currency=currency,
        credit_minor=credit,
        charge_minor=charge,
        net_minor=charge - credit,
        lines=tuple(line for line in (charge_line, credit_line) if line.amount_minor != 0),
        effective_at=at,
        period_end=new_end,
    )


def scheduled_change(
    *,
    direction: ChangeDirection,
    period_end: datetime,
    new_amount_minor: int,
    currency: str,
) -> ScheduledChange:
    """A change at period end: nothing is prorated; the new plan starts at the renewal."""
    require_utc("period_end", period_end)
    _require_amount("new_amount_minor", new_amount_minor)
    _require_currency(currency)
    return ScheduledChange(
        direction=ChangeDirection(direction),
        effective_at=period_end,
        new_amount_minor=new_amount_minor,
        currency=currency,
    )
