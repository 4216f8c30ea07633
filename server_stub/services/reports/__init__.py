"""Reports for the portal (seed 003, 3.6; docs/licensing.md, "Reports"): licenses by month, the
renewals forecast, module usage, sales by module, and the dashboard's KPIs.

Every figure is an SQL aggregate read in one snapshot; the facade turns a :class:`Report` into
JSON, CSV or XLSX (``services/tabular.py``).
"""

from __future__ import annotations

from datetime import date
from typing import Literal

from ...db import transaction
from ..context import ServiceContext
from ..tabular import MEDIA_TYPES, write_table
from . import licenses, modules
from .table import Report, check_days, month_start, months, next_month

ReportFormat = Literal["json", "csv", "xlsx"]
#: How far ahead the renewals forecast looks at most (months).
MAX_FORECAST_MONTHS = 24

__all__ = ["MEDIA_TYPES", "Report", "ReportFormat", "ReportService", "render_table"]


def render_table(report: Report, fmt: Literal["csv", "xlsx"]) -> bytes:
    return write_table(fmt, report.columns, report.rows)


class ReportService:
    def __init__(self, ctx: ServiceContext) -> None:
        self._ctx = ctx

    def licenses_by_month(self, first: date, last: date) -> Report:
        starts = months(first, last)
        with transaction(self._ctx.snapshot) as session:
            report = licenses.by_month(session, starts)
        return _with(report, first=starts[0].date(), last=starts[-1].date())

    def renewals_forecast(self, months_ahead: int) -> Report:
        now = self._ctx.clock.now()
        start = month_start(now.date())
        starts = [start]
        for _ in range(months_ahead - 1):
            starts.append(next_month(starts[-1]))
        with transaction(self._ctx.snapshot) as session:
            report = licenses.renewals_forecast(session, starts, now)
        return _with(report, months=months_ahead, from_month=start.date())

    def module_usage(self, first: date, last: date) -> Report:
        check_days(first, last)
        with transaction(self._ctx.snapshot) as session:
            report = modules.usage(session, first, last)
        return _with(report, first=first, last=last)

    def sales_by_module(self, first: date | None, last: date | None) -> Report:
        if first is not None and last is not None and last < first:
            check_days(first, last)
        with transaction(self._ctx.snapshot) as session:
            report = modules.sales(session, first, last)
        return _with(report, first=first, last=last)

    def dashboard(self) -> dict[str, int]:
        now = self._ctx.clock.now()
        with transaction(self._ctx.snapshot) as session:
            return licenses.dashboard(session, now)


def _with(report: Report, **parameters: date | int | None) -> Report:
    shown = {k: v.isoformat() if isinstance(v, date) else v for k, v in parameters.items()}
    return Report(report.name, report.columns, report.rows, shown)
