"""A report as a table: named columns and rows of plain cells, and the range helpers the reports
share (calendar months, UTC)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Final

from ...errors import ValidationFailed
from ..tabular import Cell

#: The longest range a monthly report covers, and a daily one.
MAX_MONTHS: Final = 36
MAX_DAYS: Final = 366


@dataclass(frozen=True)
class Report:
    name: str
    columns: tuple[str, ...]
    rows: list[tuple[Cell, ...]]
    #: What the report was asked for (echoed in the JSON form).
    parameters: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "report": self.name,
            "parameters": self.parameters,
            "columns": list(self.columns),
            "rows": [dict(zip(self.columns, row, strict=True)) for row in self.rows],
        }


def month_start(day: date) -> datetime:
    return datetime(day.year, day.month, 1, tzinfo=UTC)


def next_month(start: datetime) -> datetime:
    return (
        start.replace(year=start.year + 1, month=1)
        if start.month == 12
        else start.replace(month=start.month + 1)
    )


def months(first: date, last: date) -> list[datetime]:
    """The first instant of each month from ``first``'s to ``last``'s (both included)."""
    start, end = month_start(first), month_start(last)
    if end < start:
        raise ValidationFailed("the range ends before it starts")
    out = [start]
    while out[-1] < end:
        out.append(next_month(out[-1]))
        if len(out) > MAX_MONTHS:
            raise ValidationFailed(f"a range covers at most {MAX_MONTHS} months")
    return out


def check_days(first: date, last: date) -> None:
    if last >= date.max or first <= date.min:
        raise ValidationFailed("the range lies outside the calendar")
    if last < first:
        raise ValidationFailed("the range ends before it starts")
    if (last - first).days + 1 > MAX_DAYS:
        raise ValidationFailed(f"a range covers at most {MAX_DAYS} days")


def month_label(start: datetime) -> str:
    return start.strftime("%Y-%m")
