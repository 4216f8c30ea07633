"""``/external``: the integration API for billing and CRM systems (docs/licensing.md,
"Integrations"). Every request is HMAC-signed with a shared secret and a timestamp
(``services/integrations/signatures.py``); nothing is served while no secret is configured.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import ValidationError

from agent.protocol import ErrorCode, Rfc3339DateTime

from ..deps import ServicesDep
from ..portal_models import LICENSE_STATUSES
from ..problems import problem_responses
from ..services.integrations import LicenseFilter, PaymentReport, SignedRequest
from ..services.integrations.signatures import SIGNATURE_HEADER, TIMESTAMP_HEADER
from ..services.tabular import MEDIA_TYPES
from .idempotent import REPLAYED_HEADER, Idempotent, idempotency
from .integration_schemas import PaymentIn, PaymentRecordedOut

router = APIRouter(prefix="/external", tags=["external"])

_STATUS_PATTERN = f"^({'|'.join(LICENSE_STATUSES)})$"
_SIGNED = problem_responses(ErrorCode.TOKEN_INVALID, ErrorCode.SERVICE_UNAVAILABLE)
_SIGNATURE_DOC: dict[str, Any] = {
    "parameters": [
        {
            "name": TIMESTAMP_HEADER,
            "in": "header",
            "required": True,
            "schema": {"type": "string", "pattern": "^[0-9]{1,12}$"},
            "description": "Unix seconds; within 300 s of the server's clock",
        },
        {
            "name": SIGNATURE_HEADER,
            "in": "header",
            "required": True,
            "schema": {"type": "string"},
            "description": "`v1=` + hex HMAC-SHA256 of `{timestamp}.{METHOD}.{path?query}.{body}`",
        },
    ]
}


async def signed_body(request: Request, services: ServicesDep) -> bytes:
    """The raw body of a request whose signature holds (refuses it otherwise)."""
    body = await request.body()
    target: bytes = request.scope.get("raw_path") or request.url.path.encode("utf-8")
    query: bytes = request.scope.get("query_string", b"")
    if query:
        target += b"?" + query
    services.integrations.verify(
        SignedRequest(
            method=request.method,
            target=target,
            body=body,
            timestamp=request.headers.get(TIMESTAMP_HEADER),
            signature=request.headers.get(SIGNATURE_HEADER),
        )
    )
    return body


SignedBody = Annotated[bytes, Depends(signed_body)]
#: Every caller of ``/external`` holds the same shared secret: they are one caller, one key space.
ExternalIdempotent = Annotated[Idempotent, idempotency(signed_body, lambda _body: "external")]


@router.post(
    "/payments",
    response_model=PaymentRecordedOut,
    responses=problem_responses(
        ErrorCode.TOKEN_INVALID,
        ErrorCode.SERVICE_UNAVAILABLE,
        ErrorCode.NOT_FOUND,
        ErrorCode.IDEMPOTENCY_CONFLICT,
    ),
    openapi_extra={
        **_SIGNATURE_DOC,
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": PaymentIn.model_json_schema()}},
        },
    },
    summary="Report a payment of a contract (idempotent on source + external_id); a contract "
    "paid in full makes its licenses available",
)
async def report_payment(
    body: SignedBody, services: ServicesDep, idem: ExternalIdempotent
) -> Response:
    # Parsed here, after the signature: an unsigned request learns nothing about the schema.
    # A body that does not parse is refused before the key is claimed (Stripe: nothing stored).
    try:
        item = PaymentIn.model_validate_json(body)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]
        ) from None

    def record() -> Response:
        result = services.integrations.record_payment(PaymentReport(**item.model_dump()))
        # The same payment id again (without a key, or under another key) says so as a replay
        # of the Idempotency-Key would.
        headers = {REPLAYED_HEADER: "true"} if result.replayed else None
        return JSONResponse(PaymentRecordedOut.of(result).model_dump(mode="json"), headers=headers)

    return await idem.run(record)


@router.get(
    "/licenses/export",
    response_class=StreamingResponse,
    responses={
        **_SIGNED,
        200: {"content": {"application/json": {}, MEDIA_TYPES["csv"]: {}}},
    },
    openapi_extra=_SIGNATURE_DOC,
    summary="Every license (or those matching the filters) for analytics, as JSON or CSV; "
    "license keys are never included (only their last four characters, masked)",
)
def export_licenses(
    _body: SignedBody,
    services: ServicesDep,
    format: Literal["json", "csv"] = "json",
    status: Annotated[str | None, Query(pattern=_STATUS_PATTERN)] = None,
    updated_since: Annotated[Rfc3339DateTime | None, Query()] = None,
) -> Response:
    filters = LicenseFilter(status=status, updated_since=updated_since)
    if format == "csv":
        return Response(
            services.integrations.export_licenses_csv(filters),
            media_type=MEDIA_TYPES["csv"],
            headers={"Content-Disposition": 'attachment; filename="licenses.csv"'},
        )
    return StreamingResponse(
        services.integrations.export_licenses_json(filters), media_type="application/json"
    )
