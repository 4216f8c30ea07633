"""The anonymous telemetry batch (docs/server.md): its models and the rules its fields follow."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Final

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BeforeValidator,
    Field,
    Strict,
    StrictBool,
    StrictFloat,
    StrictInt,
    StringConstraints,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
)
from pydantic_core import PydanticCustomError

from .core import _Request, _Response

# --- telemetry ----------------------------------------------------------------------------------
#
# Anonymous usage events from the desktop (docs/server.md, "Telemetry"). The limits are chosen so
# that a batch with everything at its limit (100 events, every string at its longest) stays under
# the server's default 64 KiB body cap.

#: Most events in one ``POST /telemetry/events``.
TELEMETRY_MAX_BATCH: Final = 100
#: Most properties on one event, and the longest property key and string value.
TELEMETRY_MAX_PROPERTIES: Final = 6
TELEMETRY_MAX_KEY_LENGTH: Final = 24
TELEMETRY_MAX_STRING_LENGTH: Final = 24
TELEMETRY_MAX_NAME_LENGTH: Final = 48
TELEMETRY_MAX_APP_VERSION_LENGTH: Final = 32

#: ``broadcast.finished``: dot-separated lower-case words.
TELEMETRY_NAME_PATTERN: Final = r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$"
TELEMETRY_KEY_PATTERN: Final = r"^[a-z][a-z0-9_]*$"
#: String values are short codes (``simulated``, ``FloodWait``), never free text.
TELEMETRY_STRING_PATTERN: Final = r"^[A-Za-z0-9_.:+\-]*$"
TELEMETRY_APP_VERSION_PATTERN: Final = r"^[0-9A-Za-z][0-9A-Za-z.+\-]*$"
#: A random id per installation (``uuid4().hex``), linked to no user or device.
TELEMETRY_INSTALL_ID_PATTERN: Final = r"^[0-9a-f]{32}$"
TELEMETRY_EVENT_ID_PATTERN: Final = (
    r"^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$"
)

#: Property keys that could carry personal data. A key is dropped when it contains one of the
#: longer words anywhere (``user_email``, ``recipients``) or has one of the short ones as a
#: ``_``-separated word (``ip``, ``msg``); see :func:`telemetry_key_denied`.
TELEMETRY_DENIED_WORDS: Final = frozenset(
    {
        "recipient",
        "text",
        "message",
        "caption",
        "body",
        "phone",
        "user",
        "login",
        "mail",
        "name",
        "chat",
        "peer",
        "contact",
        "address",
        "password",
        "token",
        "secret",
        "hash",
    }
)
TELEMETRY_DENIED_TOKENS: Final = frozenset({"ip", "msg", "tel", "sms", "uid"})

_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")


def telemetry_key_denied(key: str) -> bool:
    """Whether a telemetry property key names something that may be personal data.

    The desktop drops such properties before they are sent and the server drops them again
    before they are stored: recipients, message text, phone numbers, user names, e-mail
    addresses, and the like never leave the machine.
    """
    lowered = key.lower()
    if any(word in lowered for word in TELEMETRY_DENIED_WORDS):
        return True
    return any(
        part in TELEMETRY_DENIED_TOKENS or part.removesuffix("s") in TELEMETRY_DENIED_TOKENS
        for part in re.split(r"[^a-z0-9]+", lowered)
    )


def _rfc3339_text(value: object) -> object:
    # pydantic would also take Unix timestamps and dates without seconds; the wire format is
    # RFC 3339 text only, as the schema says. (A datetime comes only from Python callers.)
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not _RFC3339.fullmatch(value):
        raise ValueError("must be an RFC 3339 date-time with a UTC offset")
    return value


def _as_utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError:  # within hours of year 1 or 9999: the nearest representable instant
        return (datetime.min if value.year == 1 else datetime.max).replace(tzinfo=UTC)


def _lower(value: str) -> str:
    return value.lower()


EventId = Annotated[
    str, StringConstraints(pattern=TELEMETRY_EVENT_ID_PATTERN), AfterValidator(_lower)
]
EventName = Annotated[
    str,
    StringConstraints(
        min_length=1, max_length=TELEMETRY_MAX_NAME_LENGTH, pattern=TELEMETRY_NAME_PATTERN
    ),
]
Rfc3339DateTime = Annotated[AwareDatetime, BeforeValidator(_rfc3339_text), AfterValidator(_as_utc)]
AppVersion = Annotated[
    str,
    StringConstraints(
        min_length=1,
        max_length=TELEMETRY_MAX_APP_VERSION_LENGTH,
        pattern=TELEMETRY_APP_VERSION_PATTERN,
    ),
]
InstallId = Annotated[str, StringConstraints(pattern=TELEMETRY_INSTALL_ID_PATTERN)]
PropertyKey = Annotated[
    str,
    StringConstraints(
        min_length=1, max_length=TELEMETRY_MAX_KEY_LENGTH, pattern=TELEMETRY_KEY_PATTERN
    ),
]
PropertyString = Annotated[
    str,
    Strict(),
    StringConstraints(max_length=TELEMETRY_MAX_STRING_LENGTH, pattern=TELEMETRY_STRING_PATTERN),
]


def _one_property_error(value: object, handler: ValidatorFunctionWrapHandler) -> object:
    # One clear message instead of one per member of the union.
    try:
        return handler(value)
    except ValidationError:
        raise PydanticCustomError(
            "telemetry_property",
            "must be a boolean, a finite number, or a code of at most {max} characters from "
            "A-Z a-z 0-9 _ . : + -",
            {"max": TELEMETRY_MAX_STRING_LENGTH},
        ) from None


PropertyValue = Annotated[
    # Strict members: "0000" stays a string (and must fit its limits), never becomes 0.
    StrictBool | StrictInt | Annotated[StrictFloat, Field(allow_inf_nan=False)] | PropertyString,
    WrapValidator(_one_property_error),
]


def _properties_schema(schema: dict[str, Any]) -> None:
    # pydantic documents a constrained key as ``patternProperties``, which lets a key that does
    # not match through in JSON Schema terms; ``propertyNames`` states the rule exactly.
    patterns = schema.pop("patternProperties", {})
    (value_schema,) = patterns.values()
    schema["propertyNames"] = {
        "minLength": 1,
        "maxLength": TELEMETRY_MAX_KEY_LENGTH,
        "pattern": TELEMETRY_KEY_PATTERN,
    }
    schema["additionalProperties"] = value_schema


class TelemetryEvent(_Request):
    """One anonymous usage event. It carries no user, account, recipient or message data."""

    event_id: EventId = Field(description="Random UUID chosen by the client; the idempotency key")
    name: EventName = Field(examples=["broadcast.finished"])
    occurred_at: Rfc3339DateTime
    app_version: AppVersion = Field(examples=["0.1.0"])
    install_id: InstallId = Field(
        description="Random id of the installation (uuid4 hex), linked to no user or device"
    )
    properties: dict[PropertyKey, PropertyValue] = Field(
        default_factory=dict,
        max_length=TELEMETRY_MAX_PROPERTIES,
        description="Counters and short codes; keys that may name personal data are dropped",
        json_schema_extra=_properties_schema,
    )


class TelemetryBatch(_Request):
    events: list[TelemetryEvent] = Field(min_length=1, max_length=TELEMETRY_MAX_BATCH)


class TelemetryAccepted(_Response):
    accepted: int = Field(description="Events stored by this request")
    duplicates: int = Field(
        description="Events already stored, or repeated within the batch (not stored again)"
    )
