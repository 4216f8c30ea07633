"""``/staff/reports``: the portal's reports as JSON, CSV or XLSX, and the dashboard's KPIs
(``reports.read``: Admin, Sales and Audit). Definitions: docs/licensing.md, "Reports"."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, BeforeValidator

from agent.protocol import ErrorCode

from ..deps import ServicesDep
from ..services.reports import MAX_FORECAST_MONTHS, MEDIA_TYPES, Report, ReportFormat, render_table
from ..services.staff import Permission
from .staff_auth import staff_endpoint

router = APIRouter(prefix="/staff/reports", tags=["reports"])

#: ``YYYY-MM`` of this century (a month's arithmetic stays within ``date``'s range).
MonthQuery = Annotated[str, Query(pattern=r"^20[0-9]{2}-(0[1-9]|1[0-2])$")]


def _iso_date_text(value: object) -> object:
    # Pydantic would also take a number as a Unix time; a report's range is a calendar date.
    if not (isinstance(value, str) and re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", value)):
        raise ValueError("a date as YYYY-MM-DD")
    return value


IsoDate = Annotated[date, BeforeValidator(_iso_date_text)]
FormatQuery = Annotated[ReportFormat, Query(description="json, csv or xlsx")]


class DashboardOut(BaseModel):
    active_licenses: int
    expiring_30_days: int
    expired_licenses: int
    pending_approvals: int
    live_activations: int


def _month(value: str) -> date:
    year, month = value.split("-")
    return date(int(year), int(month), 1)


def _respond(report: Report, fmt: ReportFormat) -> Response:
    if fmt == "json":
        return JSONResponse(report.as_json())
    return Response(
        render_table(report, fmt),
        media_type=MEDIA_TYPES[fmt],
        headers={"Content-Disposition": f'attachment; filename="{report.name}.{fmt}"'},
    )


def report_endpoint(path: str, summary: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return staff_endpoint(
        router,
        "GET",
        path,
        Permission.REPORTS_READ,
        ErrorCode.VALIDATION_ERROR,
        response_class=Response,
        summary=summary,
    )


@report_endpoint("/licenses-by-month", "Licenses in force, expiring and expired, per month")
def licenses_by_month(
    services: ServicesDep,
    from_month: MonthQuery,
    to_month: MonthQuery,
    format: FormatQuery = "json",
) -> Response:
    report = services.reports.licenses_by_month(_month(from_month), _month(to_month))
    return _respond(report, format)


@report_endpoint("/renewals-forecast", "Licenses ending per month ahead, with contract amounts")
def renewals_forecast(
    services: ServicesDep,
    months: Annotated[int, Query(ge=1, le=MAX_FORECAST_MONTHS)] = 12,
    format: FormatQuery = "json",
) -> Response:
    return _respond(services.reports.renewals_forecast(months), format)


@report_endpoint("/module-usage", "Per module: holders, users, heartbeats, licensed but idle")
def module_usage(
    services: ServicesDep,
    from_day: Annotated[IsoDate, Query()],
    to_day: Annotated[IsoDate, Query()],
    format: FormatQuery = "json",
) -> Response:
    return _respond(services.reports.module_usage(from_day, to_day), format)


@report_endpoint("/sales-by-module", "Per module: plan (list prices) vs fact (contract amounts)")
def sales_by_module(
    services: ServicesDep,
    from_day: Annotated[IsoDate | None, Query()] = None,
    to_day: Annotated[IsoDate | None, Query()] = None,
    format: FormatQuery = "json",
) -> Response:
    return _respond(services.reports.sales_by_module(from_day, to_day), format)


@staff_endpoint(
    router,
    "GET",
    "/dashboard",
    Permission.REPORTS_READ,
    response_model=DashboardOut,
    summary="The dashboard's KPIs now",
)
def dashboard(services: ServicesDep) -> DashboardOut:
    return DashboardOut(**services.reports.dashboard())
