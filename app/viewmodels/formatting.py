"""Dates, durations and counts as the window shows them, in the window's language."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Final

from app.i18n import Translator


def format_datetime(when: datetime | None, tr: Translator) -> str:
    """Local date and time (``—`` for none)."""
    if when is None:
        return "—"
    return when.astimezone().strftime(tr.tr("format.datetime"))


def format_duration(seconds: float, tr: Translator) -> str:
    """``42 s``, ``5 min 03 s``, ``2 h 05 min`` (whole seconds, rounded up)."""
    total = max(0, math.ceil(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return tr.tr("format.hours_minutes", hours=hours, minutes=f"{minutes:02d}")
    if minutes:
        return tr.tr("format.minutes_seconds", minutes=minutes, seconds=f"{secs:02d}")
    return tr.tr("format.seconds", seconds=secs)


def format_count(value: int | None, tr: Translator | None = None) -> str:
    """A count grouped by thousands as the window's language does (``1 000`` with a thin space
    in Russian, ``1,000`` in English; ``—`` for unknown). Without ``tr``, the Russian way."""
    if value is None:
        return "—"
    groups = f"{value:,}".split(",")
    text = groups[0]
    for group in groups[1:]:
        # A pattern, not a bare separator: a catalogue value that is only a thin space would
        # read as an empty (missing) translation.
        text = tr.tr("format.thousands", high=text, low=group) if tr else f"{text}\u202f{group}"
    return text


#: Currencies whose minor unit is not 1/100 (ISO 4217); every other has two decimals.
_MINOR_DIGITS: Final = {
    "BHD": 3, "BIF": 0, "CLP": 0, "DJF": 0, "GNF": 0, "IQD": 3, "ISK": 0, "JOD": 3, "JPY": 0,
    "KMF": 0, "KRW": 0, "KWD": 3, "LYD": 3, "OMR": 3, "PYG": 0, "RWF": 0, "TND": 3, "UGX": 0,
    "UYI": 0, "VND": 0, "VUV": 0, "XAF": 0, "XOF": 0, "XPF": 0,
}  # fmt: skip


def format_price(
    minor: int | None, currency: str, tr: Translator, *, zero_is_free: bool = True
) -> str:
    """``9.90 USD`` from 990 minor units; ``free`` for 0 (a price; an amount of money is
    ``0.00 USD`` without ``zero_is_free``); ``—`` for a plan not offered."""
    if minor is None:
        return "—"
    if minor == 0 and zero_is_free:
        return tr.tr("marketplace.price.free")
    digits = _MINOR_DIGITS.get(currency, 2)
    whole, part = divmod(minor, 10**digits)
    amount = f"{whole:,}".replace(",", "\u202f")
    if digits:
        amount += tr.tr("format.decimal_point") + f"{part:0{digits}d}"
    return f"{amount} {currency}"
