"""``POST /webhooks/rustore``: RuStore's server notifications (docs/points.md, "Store purchases
(RuStore)"). Decrypted with the console's key, stored in the one webhook inbox (deduplicated by
the notification's id) and acknowledged at once; the inbox's worker re-fetches the purchase from
RuStore and applies it. No key configured: 403 (fail closed); a payload that does not decrypt:
401; a genuine one that says nothing usable: 422.
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from agent.protocol import ErrorCode

from ..deps import ServicesDep, run_service
from ..problems import problem_responses
from ..services.billing.contract import ProviderName
from ..services.store.notifications import console_key, read_rustore
from .webhooks import WebhookReceived

router = APIRouter(prefix="/webhooks", tags=["webhooks"])


@router.post(
    "/rustore",
    response_model=WebhookReceived,
    responses=problem_responses(
        ErrorCode.FORBIDDEN, ErrorCode.TOKEN_INVALID, ErrorCode.VALIDATION_ERROR
    ),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": ["id", "timestamp", "payload"],
                        "properties": {
                            "id": {"type": "string"},
                            "timestamp": {"type": "string"},
                            "payload": {
                                "type": "string",
                                "description": "Base64 of IV (12 bytes) + AES-256-GCM "
                                "ciphertext + tag (16 bytes) under the console key",
                            },
                        },
                    }
                }
            },
        }
    },
)
async def rustore_webhook(request: Request, services: ServicesDep) -> WebhookReceived:
    """A RuStore notification (INVOICE_STATUS, TEST_EVENT, and their _SANDBOX twins)."""
    body = await request.body()
    secret = services.ctx.settings.rustore_console_key
    key = console_key(secret.get_secret_value() if secret else None)
    received = await run_service(
        services,
        services.webhooks.receive,
        ProviderName.RUSTORE,
        lambda: read_rustore(body, key),
    )
    return WebhookReceived(received=True, duplicate=received.duplicate)
