"""Injectable time source for the agent: every expiry, leeway and cooldown decision asks a Clock."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    """Anything that can tell the current time."""

    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...


class SystemClock:
    """The machine's wall clock."""

    def now(self) -> datetime:
        """The current wall-clock time in UTC."""
        return datetime.now(UTC)


class FakeClock:
    """A clock that moves only when told to (tests, benchmarks, demos)."""

    def __init__(self, start: datetime | None = None) -> None:
        """Start at ``start`` (timezone-aware), or at a fixed date in 2026."""
        self._now = start or datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        """The time this clock was last set or advanced to."""
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        """Move the clock by ``seconds`` (negative values move it back)."""
        with self._lock:
            self._now += timedelta(seconds=seconds)

    def set(self, when: datetime) -> None:
        """Jump to ``when`` (timezone-aware)."""
        with self._lock:
            self._now = when
