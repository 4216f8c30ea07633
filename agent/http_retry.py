"""Retries below every request of the license client: :class:`RetryingTransport` and its policy.

Connection errors, 5xx and 429 are retried with exponential backoff and jitter (``Retry-After``
honoured), and the very same request (same body, so the same ``correlation_id``) is sent again.
Requests that are not idempotent (login, register, refresh) carry :data:`NOT_IDEMPOTENT` and are
retried only when they cannot have reached the server (connection refused) or the server says it
did not handle them (429, 503). A POST that carries an ``Idempotency-Key`` (the billing client's)
is not marked: the server answers a repeat of the same key with its first answer, so retrying it
is safe. :mod:`agent.client` re-exports every name.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Final

import httpx

from agent.clock import Clock, SystemClock

# The client's logger: a retry is a line of the client's story, wherever the code lives.
logger = logging.getLogger("tgflow.agent.client")

#: Request extension naming a request that must not be repeated once it may have reached the server.
NOT_IDEMPOTENT: Final = "tgflow_not_idempotent"

_RETRY_STATUSES_UNSENT: Final = frozenset({429, 503})


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry a request that failed for a transient reason.

    Attempt ``n`` (0-based) that failed waits ``min(max_delay, base_delay * 2**n)`` scaled by a
    random factor in ``[0.5, 1)`` (jitter, so that many agents do not retry in step). A 429 or 503
    with ``Retry-After`` waits what the server asked, up to ``max_retry_after``; a longer wait is
    not attempted (the answer is returned as it is).
    """

    max_attempts: int = 4
    base_delay: float = 0.5
    max_delay: float = 8.0
    max_retry_after: float = 60.0

    def backoff(self, attempt: int, rand: float) -> float:
        """The delay after failed attempt ``attempt`` (0-based), ``rand`` drawn from [0, 1)."""
        delay: float = min(self.max_delay, self.base_delay * 2.0**attempt)
        return delay * (0.5 + rand / 2)


def retry_after_seconds(response: httpx.Response, now: datetime) -> float | None:
    """The wait a ``Retry-After`` header asks for (seconds or an HTTP date), or ``None``."""
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


class RetryingTransport(httpx.AsyncBaseTransport):
    """Wraps a transport and re-sends the same request on connection errors, 5xx and 429.

    ``sleep`` and ``rand`` are injectable so that tests neither wait nor depend on chance. A
    request carrying the :data:`NOT_IDEMPOTENT` extension is retried only after a connection
    failure that happened before anything was sent, or a 429/503.
    """

    def __init__(
        self,
        inner: httpx.AsyncBaseTransport,
        policy: RetryPolicy,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rand: Callable[[], float] = random.random,
        clock: Clock | None = None,
    ) -> None:
        """Send through ``inner`` following ``policy``."""
        self._inner = inner
        self._policy = policy
        self._sleep = sleep
        self._rand = rand
        self._clock: Clock = clock or SystemClock()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request``, retrying transient failures; the last failure is returned/raised."""
        not_idempotent = bool(request.extensions.get(NOT_IDEMPOTENT))
        await request.aread()  # the body is replayed as it is: same bytes, same correlation_id
        attempt = 0
        while True:
            last = attempt + 1 >= self._policy.max_attempts
            try:
                response = await self._inner.handle_async_request(request)
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
                if last:
                    raise
                delay = self._policy.backoff(attempt, self._rand())
                reason = f"{type(exc).__name__}: {exc}"
            except httpx.TransportError as exc:
                if last or not_idempotent:
                    raise
                delay = self._policy.backoff(attempt, self._rand())
                reason = f"{type(exc).__name__}: {exc}"
            else:
                status = response.status_code
                retryable = status in _RETRY_STATUSES_UNSENT or (
                    status >= 500 and not not_idempotent
                )
                if not retryable or last:
                    return response
                delay = self._policy.backoff(attempt, self._rand())
                asked = retry_after_seconds(response, self._clock.now())
                if asked is not None:
                    if asked > self._policy.max_retry_after:
                        return response
                    delay = asked
                reason = f"HTTP {status}"
                await response.aclose()
            logger.info(
                "%s %s failed (%s); retry %d in %.2f s",
                request.method,
                request.url.path,
                reason,
                attempt + 1,
                delay,
            )
            await self._sleep(delay)
            attempt += 1

    async def aclose(self) -> None:
        """Close the wrapped transport."""
        await self._inner.aclose()
