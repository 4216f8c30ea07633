"""``/staff/notifications``: the channel setting (Admin), the outbox, a test message, a redrive.

The outbox is read with ``audit.read``: it is a record of what the portal told whom and when,
which the Audit role reads as it reads the log (Admin holds every permission). Changing where
notifications go, sending a test and redriving are ``settings.manage`` (Admin only).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from agent.protocol import ErrorCode

from ..deps import ServicesDep
from ..portal_models import Notification
from ..services.notifications import KINDS
from ..services.notifications.service import MAX_PAGE
from ..services.notifications.targets import Targets
from ..services.staff import Permission
from .staff_auth import StaffDep, staff_endpoint

router = APIRouter(prefix="/staff/notifications", tags=["notifications"])

Channel = Literal["smtp", "webhook", "telegram"]
#: A chat's numeric id (negative for groups) or a public channel's @username.
ChatId = Annotated[str, StringConstraints(pattern=r"^(-?[0-9]{1,20}|@[A-Za-z0-9_]{5,32})$")]
#: An address as SMTP takes it, in ASCII (an IDN domain in its punycode form); the relay judges
#: its domain. ASCII classes, not ``\s``: Python's and JSON Schema's regexes differ beyond ASCII.
Address = Annotated[
    str,
    StringConstraints(
        max_length=254,
        pattern=r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$",
    ),
]
Kind = Literal[KINDS]  # type: ignore[valid-type]


class NotificationSettingsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    channels: list[Channel] = Field(default_factory=list, max_length=3)
    language: Literal["ru", "en"] = "ru"
    smtp_to: list[Address] = Field(default_factory=list, max_length=20)
    telegram_chat_ids: list[ChatId] = Field(default_factory=list, max_length=20)
    webhook_style: Literal["generic", "slack"] = "generic"


class NotificationSettingsOut(BaseModel):
    channels: list[str]
    language: str
    smtp_to: list[str]
    telegram_chat_ids: list[str]
    webhook_style: str
    #: Whether the server's environment holds each channel's secrets (never the secrets).
    secrets_present: dict[str, bool]


class TestRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    channel: Channel


class TestOut(BaseModel):
    channel: str
    delivered: bool
    error: str | None


class OutboxRowOut(BaseModel):
    seq: int
    kind: str
    channel: str
    license_id: str | None
    created_at: datetime
    attempts: int
    next_attempt_at: datetime | None
    delivered_at: datetime | None
    failed_at: datetime | None
    last_error: str | None
    status: Literal["pending", "delivered", "failed"]


class OutboxPageOut(BaseModel):
    rows: list[OutboxRowOut]
    next_cursor: str | None


def _settings_out(targets: Targets, present: dict[str, bool]) -> NotificationSettingsOut:
    return NotificationSettingsOut(**targets.as_json(), secrets_present=present)


def _row_out(row: Notification) -> OutboxRowOut:
    status: Literal["pending", "delivered", "failed"] = (
        "delivered" if row.delivered_at else "failed" if row.failed_at else "pending"
    )
    return OutboxRowOut(
        seq=row.seq,
        kind=row.kind,
        channel=row.channel,
        license_id=row.license_id,
        created_at=row.created_at,
        attempts=row.attempts,
        next_attempt_at=row.next_attempt_at,
        delivered_at=row.delivered_at,
        failed_at=row.failed_at,
        last_error=row.last_error,
        status=status,
    )


@staff_endpoint(
    router,
    "GET",
    "/settings",
    Permission.SETTINGS_MANAGE,
    response_model=NotificationSettingsOut,
    summary="Which channels notifications go to, and to whom",
)
def get_settings(services: ServicesDep) -> NotificationSettingsOut:
    notifications = services.notifications
    return _settings_out(notifications.targets(), notifications.secrets_present())


@staff_endpoint(
    router,
    "PUT",
    "/settings",
    Permission.SETTINGS_MANAGE,
    ErrorCode.VALIDATION_ERROR,
    response_model=NotificationSettingsOut,
    summary="Set the channels and recipients (a channel without its secret is refused)",
)
def put_settings(
    body: NotificationSettingsIn, principal: StaffDep, services: ServicesDep
) -> NotificationSettingsOut:
    targets = Targets(
        channels=tuple(dict.fromkeys(body.channels)),
        language=body.language,
        smtp_to=tuple(dict.fromkeys(str(a) for a in body.smtp_to)),
        telegram_chat_ids=tuple(dict.fromkeys(body.telegram_chat_ids)),
        webhook_style=body.webhook_style,
    )
    notifications = services.notifications
    saved = notifications.set_targets(principal.actor, targets)
    return _settings_out(saved, notifications.secrets_present())


@staff_endpoint(
    router,
    "POST",
    "/test",
    Permission.SETTINGS_MANAGE,
    ErrorCode.VALIDATION_ERROR,
    response_model=TestOut,
    summary="Send a test message on a channel now; says whether it was delivered",
)
def send_test(body: TestRequest, principal: StaffDep, services: ServicesDep) -> TestOut:
    result = services.notifications.send_test(principal.actor, body.channel)
    return TestOut(channel=result.channel, delivered=result.delivered, error=result.error)


@staff_endpoint(
    router,
    "GET",
    "/outbox",
    Permission.AUDIT_READ,
    ErrorCode.VALIDATION_ERROR,
    response_model=OutboxPageOut,
    summary="The outbox, newest first (cursor pagination)",
)
def list_outbox(
    services: ServicesDep,
    status: Literal["pending", "delivered", "failed"] | None = None,
    kind: Kind | None = None,
    channel: Channel | None = None,
    license_id: Annotated[str | None, Query(max_length=36)] = None,
    cursor: Annotated[int | None, Query(ge=1, le=2**31 - 1, description="next_cursor")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
) -> OutboxPageOut:
    page = services.notifications.outbox(
        status=status,
        kind=kind,
        channel=channel,
        license_id=license_id,
        cursor=cursor,
        limit=limit,
    )
    return OutboxPageOut(rows=[_row_out(r) for r in page.rows], next_cursor=page.next_cursor)


@staff_endpoint(
    router,
    "POST",
    "/outbox/{seq}/redrive",
    Permission.SETTINGS_MANAGE,
    ErrorCode.NOT_FOUND,
    ErrorCode.VALIDATION_ERROR,
    response_model=OutboxRowOut,
    summary="Give a dead-lettered notification a fresh set of attempts",
)
def redrive(
    seq: Annotated[int, Path(ge=1, le=2**31 - 1)], principal: StaffDep, services: ServicesDep
) -> OutboxRowOut:
    return _row_out(services.notifications.redrive(principal.actor, seq))
