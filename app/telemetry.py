"""Optional, anonymous usage telemetry: the desktop's side of ``POST /telemetry/events``.

DESIGN.md: telemetry is off by default (``settings.ini`` ``[telemetry] enabled``), anonymised and
idempotent. :class:`TelemetryClient` keeps those promises on the desktop:

* Disabled, it does nothing at all: :meth:`~TelemetryClient.record` returns at once, nothing is
  buffered, no install id is written and no request is ever made.
* :meth:`~TelemetryClient.record` is synchronous and cheap (no I/O; safe from any thread). It
  keeps only properties whose value is a scalar (bool, int, finite float, or a short code) and
  whose key does not name something personal (``agent.protocol.telemetry_key_denied``:
  recipients, message text, phone numbers, user names, e-mail addresses, …); the rest never
  leaves this object.
* Each event gets a random ``event_id`` when it is recorded and keeps it until the server has
  answered for it, so a flush that is retried after a lost answer is stored once (the server
  counts the copy as a duplicate).
* A flush that fails (server unreachable, 5xx, 429) keeps its events for the next flush. The
  buffer is bounded; when it is full the oldest events are dropped. A batch the server refuses
  as invalid (another 4xx) is dropped: sending it again would be refused again.
* Events carry a random install id (``uuid4().hex``, stored owner-only in ``install_id_path`` on
  first use), the app version and the time. No token is sent and no account, device or user id.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import threading
import uuid
from collections import deque
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Final

import httpx
from pydantic import ValidationError

from agent.clock import Clock, SystemClock
from agent.private_files import write_private_file
from agent.protocol import (
    TELEMETRY_APP_VERSION_PATTERN,
    TELEMETRY_INSTALL_ID_PATTERN,
    TELEMETRY_KEY_PATTERN,
    TELEMETRY_MAX_APP_VERSION_LENGTH,
    TELEMETRY_MAX_BATCH,
    TELEMETRY_MAX_KEY_LENGTH,
    TELEMETRY_MAX_NAME_LENGTH,
    TELEMETRY_MAX_PROPERTIES,
    TELEMETRY_MAX_STRING_LENGTH,
    TELEMETRY_NAME_PATTERN,
    TELEMETRY_STRING_PATTERN,
    Problem,
    TelemetryAccepted,
    TelemetryBatch,
    TelemetryEvent,
    telemetry_key_denied,
)

log = logging.getLogger("tgflow.telemetry")

EVENTS_PATH: Final = "/telemetry/events"
#: Events kept while the server cannot be reached; beyond this the oldest are dropped.
DEFAULT_MAX_BUFFERED: Final = 1000
DEFAULT_TIMEOUT_SECONDS: Final = 10.0

PropertyValue = bool | int | float | str

_NAME = re.compile(TELEMETRY_NAME_PATTERN)
_KEY = re.compile(TELEMETRY_KEY_PATTERN)
_STRING = re.compile(TELEMETRY_STRING_PATTERN)
_APP_VERSION = re.compile(TELEMETRY_APP_VERSION_PATTERN)
_INSTALL_ID = re.compile(TELEMETRY_INSTALL_ID_PATTERN)
#: Answers that say "not now" rather than "never": the batch is kept for the next flush.
_RETRY_STATUSES: Final = frozenset({408, 425, 429})


@dataclass(frozen=True)
class FlushResult:
    """What one :meth:`TelemetryClient.flush` did."""

    #: Events the server answered for: stored now (``accepted``) or already (``duplicates``).
    delivered: int = 0
    accepted: int = 0
    duplicates: int = 0
    #: Events dropped because the server refused their batch as invalid.
    rejected: int = 0
    #: Events still buffered for the next flush.
    pending: int = 0
    #: Why the flush stopped before the buffer was empty (its events are kept), else None.
    error: str | None = None


@dataclass(frozen=True)
class _Recorded:
    event_id: str
    name: str
    occurred_at: datetime
    properties: dict[str, PropertyValue]


class _KeepForLater(Exception):
    """The batch was not handled by the server (or may not have been): send it again later."""


class TelemetryClient:
    """Buffers anonymous usage events and sends them to ``POST /telemetry/events`` in batches.

    ``record`` may be called from any thread; ``flush`` and ``aclose`` run on the asyncio loop
    that owns ``http`` (one flush at a time).
    """

    def __init__(
        self,
        api_base_url: str,
        *,
        enabled: bool,
        install_id_path: Path,
        app_version: str,
        http: httpx.AsyncClient | None = None,
        batch_size: int = 50,
        max_buffered: int = DEFAULT_MAX_BUFFERED,
        clock: Clock | None = None,
    ) -> None:
        if not 1 <= batch_size <= TELEMETRY_MAX_BATCH:
            raise ValueError(f"batch_size must be between 1 and {TELEMETRY_MAX_BATCH}")
        if max_buffered < batch_size:
            raise ValueError("max_buffered must be at least batch_size")
        if len(app_version) > TELEMETRY_MAX_APP_VERSION_LENGTH or not _APP_VERSION.fullmatch(
            app_version
        ):
            raise ValueError(f"app_version {app_version!r} is not a valid version string")
        self._enabled = enabled
        self._url = api_base_url.rstrip("/") + EVENTS_PATH
        self._install_id_path = install_id_path
        self._app_version = app_version
        self._http = http
        self._owns_http = http is None
        self._batch_size = batch_size
        self._max_buffered = max_buffered
        self._clock: Clock = clock or SystemClock()
        self._buffer: deque[_Recorded] = deque()
        self._lock = threading.Lock()
        self._flushing = asyncio.Lock()
        self._install_id: str | None = None
        self._dropped = 0
        self._warned: set[tuple[str, str]] = set()

    @property
    def enabled(self) -> bool:
        return self._enabled

    @property
    def pending(self) -> int:
        """Events recorded and not yet delivered."""
        with self._lock:
            return len(self._buffer)

    @property
    def dropped(self) -> int:
        """Events dropped, oldest first, because the buffer was full."""
        with self._lock:
            return self._dropped

    # --- recording ------------------------------------------------------------------------------

    def record(self, name: str, /, **properties: object) -> bool:
        """Buffer the event ``name`` with ``properties``; ``True`` if it was buffered.

        Never raises and never does I/O. Disabled, it does nothing. A name that is not a
        dotted lower-case identifier (``broadcast.finished``) refuses the event; properties
        that are personal or not scalar are left out (see the module docstring).
        """
        if not self._enabled:
            return False
        if len(name) > TELEMETRY_MAX_NAME_LENGTH or not _NAME.fullmatch(name):
            self._warn_once(name, "", "telemetry event refused: %r is not a valid event name")
            return False
        event = _Recorded(
            event_id=str(uuid.uuid4()),
            name=name,
            occurred_at=self._clock.now(),
            properties=self._clean(name, properties),
        )
        with self._lock:
            self._buffer.append(event)
            self._trim()
        return True

    def _clean(self, name: str, properties: dict[str, object]) -> dict[str, PropertyValue]:
        kept: dict[str, PropertyValue] = {}
        for key, value in properties.items():
            if telemetry_key_denied(key):
                self._warn_once(name, key, "telemetry property %r of %r left out: personal data")
            elif len(key) > TELEMETRY_MAX_KEY_LENGTH or not _KEY.fullmatch(key):
                self._warn_once(name, key, "telemetry property %r of %r left out: bad key")
            elif (scalar := _scalar(value)) is None:
                self._warn_once(name, key, "telemetry property %r of %r left out: bad value")
            elif len(kept) >= TELEMETRY_MAX_PROPERTIES:
                self._warn_once(name, key, "telemetry property %r of %r left out: too many")
            else:
                kept[key] = scalar
        return kept

    def _warn_once(self, name: str, key: str, message: str) -> None:
        # Keys and names only, never values: a value is what may be personal.
        with self._lock:
            if (name, key) in self._warned:
                return
            self._warned.add((name, key))
        if key:
            log.warning(message, key, name)
        else:
            log.warning(message, name)

    def _trim(self) -> None:
        # The caller holds self._lock.
        while len(self._buffer) > self._max_buffered:
            self._buffer.popleft()
            self._dropped += 1

    # --- sending --------------------------------------------------------------------------------

    async def flush(self) -> FlushResult:
        """Send every buffered event, ``batch_size`` at a time, until done or a batch fails.

        Never raises for network or server trouble: the events of a failed batch stay buffered
        (in order, at the front) and :attr:`FlushResult.error` says why.
        """
        if not self._enabled:
            return FlushResult()
        async with self._flushing:
            delivered = accepted = duplicates = rejected = 0
            error: str | None = None
            while True:
                with self._lock:
                    count = min(self._batch_size, len(self._buffer))
                    batch = [self._buffer.popleft() for _ in range(count)]
                if not batch:
                    break
                try:
                    answer = await self._send(batch)
                except _KeepForLater as exc:
                    with self._lock:
                        self._buffer.extendleft(reversed(batch))
                        self._trim()
                    error = str(exc)
                    log.info("telemetry not sent; kept for the next flush: %s", error)
                    break
                if answer is None:
                    rejected += len(batch)
                else:
                    delivered += len(batch)
                    accepted += answer.accepted
                    duplicates += answer.duplicates
            return FlushResult(delivered, accepted, duplicates, rejected, self.pending, error)

    async def _send(self, batch: list[_Recorded]) -> TelemetryAccepted | None:
        """POST one batch: the server's answer, or None if it refused the batch for good."""
        try:
            install_id = await asyncio.to_thread(self._ensure_install_id)
        except OSError as exc:
            raise _KeepForLater(f"cannot store the install id: {exc}") from exc
        events = []
        for item in batch:
            try:
                events.append(
                    TelemetryEvent(
                        event_id=item.event_id,
                        name=item.name,
                        occurred_at=item.occurred_at,
                        app_version=self._app_version,
                        install_id=install_id,
                        properties=item.properties,
                    )
                )
            except ValidationError:  # record() admits nothing invalid; never block the queue
                log.warning("telemetry event %r dropped: not valid", item.name)
        if not events:
            return TelemetryAccepted(accepted=0, duplicates=0)
        body = TelemetryBatch(events=events).model_dump(mode="json")
        try:
            response = await self._client().post(self._url, json=body)
        except httpx.HTTPError as exc:
            raise _KeepForLater(f"{type(exc).__name__}: {exc}") from exc
        if response.is_success:
            try:
                return TelemetryAccepted.model_validate_json(response.content)
            except ValidationError:
                log.warning("telemetry answer not understood; the batch counts as delivered")
                return TelemetryAccepted(accepted=0, duplicates=0)
        if response.status_code in _RETRY_STATUSES or response.status_code >= 500:
            raise _KeepForLater(f"the server answered {response.status_code}")
        log.warning(
            "telemetry batch of %d event(s) refused by the server (%d %s); dropped",
            len(batch),
            response.status_code,
            _problem_code(response),
        )
        return None

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=DEFAULT_TIMEOUT_SECONDS)
        return self._http

    def _ensure_install_id(self) -> str:
        if self._install_id is None:
            self._install_id = load_or_create_install_id(self._install_id_path)
        return self._install_id

    async def aclose(self) -> None:
        """Close the HTTP client if this object created it (buffered events are not sent)."""
        if self._owns_http and self._http is not None:
            await self._http.aclose()
            self._http = None


def load_or_create_install_id(path: Path) -> str:
    """The install id stored in ``path``; a new random one (file mode 0600) if there is none.

    The id is ``uuid4().hex``: random, so it says nothing about the machine or the user, and
    it stays the same across runs so that events of one installation can be told apart.
    """
    try:
        existing = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        existing = ""
    except (UnicodeDecodeError, ValueError):
        existing = ""  # unreadable content: replaced below
    if _INSTALL_ID.fullmatch(existing):
        return existing
    install_id = uuid.uuid4().hex
    write_private_file(path, (install_id + "\n").encode("ascii"))
    return install_id


def _scalar(value: object) -> PropertyValue | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        text = str(value)
        if len(text) <= TELEMETRY_MAX_STRING_LENGTH and _STRING.fullmatch(text):
            return text
    return None


def _problem_code(response: httpx.Response) -> str:
    try:
        return Problem.model_validate_json(response.content).code.value
    except ValidationError:
        return "no problem details"
