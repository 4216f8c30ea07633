"""Time for the desktop: every pause, cooldown and countdown asks an :class:`AsyncClock`."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Protocol

from agent.clock import FakeClock


class AsyncClock(Protocol):
    """A clock that can also wait."""

    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of this clock's time."""
        ...


class SystemAsyncClock:
    """The machine's clock; waiting is :func:`asyncio.sleep`."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


class FakeAsyncClock(FakeClock):
    """A clock whose waits return at once and move the time (tests, benchmarks).

    Every wait is recorded in :attr:`sleeps`, so a test can assert that a FloodWait of 42 s
    was waited exactly 42 s.
    """

    def __init__(self, start: datetime | None = None) -> None:
        super().__init__(start)
        self.sleeps: list[float] = []

    async def sleep(self, seconds: float) -> None:
        seconds = max(0.0, seconds)
        self.sleeps.append(seconds)
        self.advance(seconds)
        # Yield, as a real wait would, so that other tasks (a stop request) get their turn.
        await asyncio.sleep(0)


def seconds_until(clock: AsyncClock, when: datetime) -> float:
    """Seconds from now to ``when`` (0 when it has passed)."""
    return max(0.0, (when - clock.now()) / timedelta(seconds=1))
