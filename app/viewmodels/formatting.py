"""Dates, durations and counts as the window shows them, in the window's language."""

from __future__ import annotations

import math
from datetime import datetime

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
