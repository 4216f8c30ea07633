"""``/staff/payments``: what staff see of payments, and the import of a bank statement.

Reading is ``payments.read`` (Sales, Audit, Admin). Importing records money against contracts and
can make a contract paid, a change to contracts: ``contracts.write`` (Sales and Admin), not the
read-only permission (docs/licensing.md, "Integrations").
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request, Response, status

from agent.protocol import ErrorCode, Rfc3339DateTime

from ..deps import ServicesDep
from ..services.integrations import MAX_PAGE, PaymentFilter
from ..services.integrations.payment_queries import CURSOR_PATTERN
from ..services.integrations.payments import SOURCE_PATTERN
from ..services.staff import Permission
from ..services.tabular import MEDIA_TYPES, Format
from .idempotent import StaffIdempotent
from .integration_schemas import PaymentImportOut, PaymentOut, PaymentPageOut
from .staff_auth import StaffDep, staff_endpoint

router = APIRouter(prefix="/staff/payments", tags=["payments"])

_Id = Annotated[str | None, Query(min_length=1, max_length=36)]
#: The first bytes of every XLSX file (a ZIP archive).
_ZIP_MAGIC = b"PK\x03\x04"


def payment_filter(
    contract_id: _Id = None,
    client_id: _Id = None,
    source: Annotated[str | None, Query(pattern=SOURCE_PATTERN)] = None,
    since: Annotated[Rfc3339DateTime | None, Query(description="paid_at from (inclusive)")] = None,
    until: Annotated[Rfc3339DateTime | None, Query(description="paid_at until (exclusive)")] = None,
) -> PaymentFilter:
    return PaymentFilter(contract_id, client_id, source, since, until)


FilterDep = Annotated[PaymentFilter, Depends(payment_filter)]


@staff_endpoint(
    router,
    "GET",
    "",
    Permission.PAYMENTS_READ,
    ErrorCode.VALIDATION_ERROR,
    response_model=PaymentPageOut,
    summary="Payments, newest first (cursor pagination)",
)
def list_payments(
    services: ServicesDep,
    filters: FilterDep,
    cursor: Annotated[
        str | None, Query(pattern=CURSOR_PATTERN, description="next_cursor of the last page")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
) -> PaymentPageOut:
    page = services.integrations.list_payments(filters, cursor, limit)
    return PaymentPageOut(
        payments=[PaymentOut.of(row) for row in page.rows], next_cursor=page.next_cursor
    )


@staff_endpoint(
    router,
    "GET",
    "/export",
    Permission.PAYMENTS_READ,
    ErrorCode.VALIDATION_ERROR,
    response_class=Response,
    summary="The payments matching the filters as CSV or XLSX",
)
def export_payments(
    principal: StaffDep,
    services: ServicesDep,
    filters: FilterDep,
    format: Literal["csv", "xlsx"] = "csv",
) -> Response:
    data = services.integrations.export_payments(principal.actor, filters, format)
    return Response(
        data,
        media_type=MEDIA_TYPES[format],
        headers={"Content-Disposition": f'attachment; filename="payments.{format}"'},
    )


@staff_endpoint(
    router,
    "POST",
    "/import",
    Permission.CONTRACTS_WRITE,
    ErrorCode.VALIDATION_ERROR,
    ErrorCode.PAYLOAD_TOO_LARGE,
    ErrorCode.IDEMPOTENCY_CONFLICT,
    status_code=status.HTTP_200_OK,
    response_model=PaymentImportOut,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {MEDIA_TYPES["csv"]: {}, MEDIA_TYPES["xlsx"]: {}},
        }
    },
    summary="Import a bank statement (the file as the body; columns source, external_id, "
    "contract_number, amount_minor, currency, paid_at): every row valid, or nothing imported",
)
async def import_payments(
    request: Request,
    principal: StaffDep,
    services: ServicesDep,
    idem: StaffIdempotent,
    format: Annotated[
        Literal["csv", "xlsx"] | None,
        Query(description="Default: XLSX when the body is a ZIP archive, else CSV"),
    ] = None,
) -> Response:
    data = await request.body()
    fmt: Format = format or ("xlsx" if data.startswith(_ZIP_MAGIC) else "csv")
    return await idem.run(
        lambda: PaymentImportOut.of(
            services.integrations.import_payments(principal.actor, data, fmt)
        )
    )
