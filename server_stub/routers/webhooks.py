"""``/webhooks``: what payment providers tell us (docs/billing.md, "Webhooks: one inbox").

Each delivery is verified, deduplicated and stored by ``services/webhooks``, and acknowledged at
once; the inbox's worker applies it later. A provider whose secret is not configured is refused
(403), a bad signature too (401), a genuine body that says nothing usable is a 422.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict

from agent.protocol import ErrorCode

from ..deps import ServicesDep, run_service
from ..problems import problem_responses
from ..services.webhooks import (
    CLOUDPAYMENTS_HMAC_HEADERS,
    STRIPE_SIGNATURE_HEADER,
    CloudPaymentsKind,
)

router = APIRouter(prefix="/webhooks", tags=["webhooks"])

_REFUSALS = problem_responses(
    ErrorCode.FORBIDDEN, ErrorCode.TOKEN_INVALID, ErrorCode.VALIDATION_ERROR
)
_OBJECT: dict[str, Any] = {"type": "object"}


class WebhookReceived(BaseModel):
    model_config = ConfigDict(extra="forbid")

    received: bool
    #: The provider's event id was already in the inbox: acknowledged, not queued again.
    duplicate: bool


class CloudPaymentsAnswer(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: 0: accepted; for Check also 10 (unknown order), 11 (wrong account), 12 (wrong amount),
    #: 13 (rejected), 20 (expired).
    code: int


@router.post(
    "/stripe",
    response_model=WebhookReceived,
    responses=_REFUSALS,
    openapi_extra={
        "parameters": [
            {
                "name": STRIPE_SIGNATURE_HEADER,
                "in": "header",
                "required": True,
                "schema": {"type": "string"},
                "description": "`t=<unix seconds>,v1=<hex HMAC-SHA256 of {t}.{body}>[,v1=…]`",
            }
        ],
        "requestBody": {"required": True, "content": {"application/json": {"schema": _OBJECT}}},
    },
)
async def stripe_webhook(request: Request, services: ServicesDep) -> WebhookReceived:
    """A Stripe event (any type; billing decides which it acts on)."""
    body = await request.body()
    received = await run_service(
        services,
        services.webhooks.receive_stripe,
        body,
        request.headers.get(STRIPE_SIGNATURE_HEADER),
    )
    return WebhookReceived(received=True, duplicate=received.duplicate)


@router.post(
    "/cloudpayments/{kind}",
    response_model=CloudPaymentsAnswer,
    responses=_REFUSALS,
    openapi_extra={
        "parameters": [
            {
                "name": CLOUDPAYMENTS_HMAC_HEADERS[0],
                "in": "header",
                "required": True,
                "schema": {"type": "string"},
                "description": "base64 HMAC-SHA256 of the raw body with the API secret "
                f"(or `{CLOUDPAYMENTS_HMAC_HEADERS[1]}`)",
            }
        ],
        "requestBody": {
            "required": True,
            "content": {
                "application/x-www-form-urlencoded": {"schema": _OBJECT},
                "application/json": {"schema": _OBJECT},
            },
        },
    },
)
async def cloudpayments_webhook(
    kind: CloudPaymentsKind, request: Request, services: ServicesDep
) -> CloudPaymentsAnswer:
    """A CloudPayments notification; its type is the last path segment. Check is answered now
    (`code` 0 or a refusal code); every other type is stored and answered `{"code": 0}`."""
    body = await request.body()
    headers = request.headers
    signature = headers.get(CLOUDPAYMENTS_HMAC_HEADERS[0]) or headers.get(
        CLOUDPAYMENTS_HMAC_HEADERS[1]
    )
    reply = await run_service(
        services,
        services.webhooks.receive_cloudpayments,
        kind,
        body,
        headers.get("content-type"),
        signature,
    )
    return CloudPaymentsAnswer(code=int(reply.code))
