"""``/telemetry``: anonymous desktop usage events. No authentication: events name nobody."""

from __future__ import annotations

from fastapi import APIRouter

from agent.protocol import TelemetryAccepted, TelemetryBatch

from ..deps import ServicesDep
from ..problems import problem_responses

router = APIRouter(prefix="/telemetry", tags=["telemetry"])


@router.post(
    "/events",
    response_model=TelemetryAccepted,
    responses=problem_responses(),
    summary="Store anonymous usage events (idempotent by event_id)",
    description="No token is needed and none is read: events are stored without any user, "
    "device or client address. An event whose `event_id` was stored before counts as a "
    "duplicate and is not stored again. Property keys that may name personal data "
    "(recipients, message text, phone numbers, e-mail addresses, user names, …) are dropped.",
)
def post_events(body: TelemetryBatch, services: ServicesDep) -> TelemetryAccepted:
    result = services.telemetry.record(body.events)
    return TelemetryAccepted(accepted=result.accepted, duplicates=result.duplicates)
