"""License-file mode online: the machine activated with the license server and its heartbeats.

Qt-free, on the engine loop like :class:`app.core.Core`. :class:`OnlineLicense` wraps the
agent's :class:`agent.licensing.OnlineActivation` (which keeps the activation beside the file):
the blocking HTTP calls run in a worker thread started from the engine loop (never the GUI
thread), and the waits between heartbeats are a :class:`HeartbeatTimer`'s, so tests fire them.

What a heartbeat brings is handed to the core (:class:`OnlineEvent`): a newer file's text (the
core takes it through the path of a file chosen by hand), or a refusal. An unreachable server
changes nothing: the kept file's offline rules go on deciding, and only the panel's "last
checked" line tells (docs/desktop.md, "License files").
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Final, Protocol

from agent.errors import LicenseError, NotFound, Offline
from agent.licensing import HeartbeatOutcome, LicenseFileStore, OnlineActivation

from .catalog import N_, Reason
from .clock import AsyncClock
from .core_types import OnlineStatus
from .problems import problem_reason

log = logging.getLogger("tgflow.core")

#: Until the server names its own interval (and after a heartbeat it did not answer).
DEFAULT_INTERVAL_S: Final = 300
#: However the server answers, no closer than this (a bad answer must not hammer it).
MIN_INTERVAL_S: Final = 30
#: The server's states after which the license is refused here (the agent persists them).
REFUSING_STATES: Final = frozenset({"revoked", "suspended", "expired"})


class HeartbeatTimer(Protocol):
    """What waits between heartbeats."""

    async def wait(self, seconds: float) -> None:
        """Return after ``seconds`` (or when a test says so)."""
        ...


class ClockTimer:
    """The program's timer: the core's clock waits."""

    def __init__(self, clock: AsyncClock) -> None:
        self._clock = clock

    async def wait(self, seconds: float) -> None:
        await self._clock.sleep(seconds)


@dataclass(frozen=True)
class OnlineEvent:
    """What a heartbeat changed, for the core to apply."""

    status: OnlineStatus
    #: A newer license file (its text), already kept by the agent.
    new_file: str | None = None
    #: The server revoked, suspended or ended the license: it is refused here from now on.
    refused_state: str | None = None


class OnlineLicense:
    """The online side of license-file mode: activate once, then heartbeat on a timer."""

    def __init__(
        self,
        online: OnlineActivation,
        *,
        clock: AsyncClock,
        timer: HeartbeatTimer,
        modules: Callable[[], tuple[str, ...]],
    ) -> None:
        self.activation = online
        self._clock = clock
        self._timer = timer
        self._modules = modules
        self._task: asyncio.Task[None] | None = None
        #: The server's last refusing state heard on this run (told once, when it changes).
        self._refused_state: str | None = None
        self._handler: Callable[[OnlineEvent], Awaitable[None]] | None = None
        self.status = OnlineStatus()

    @property
    def activated(self) -> bool:
        """Whether this machine's online activation is kept (from this run or an earlier)."""
        return self.activation.path.exists()

    def start(self, handler: Callable[[OnlineEvent], Awaitable[None]]) -> None:
        """Activate (if not yet) and heartbeat until :meth:`stop`; ``handler`` applies events."""
        self._handler = handler
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def activate(self, license_key: str) -> bool | None:
        """Activate this machine online: ``True``; ``False`` when the server is unreachable (try
        again later); ``None`` when it refused (:attr:`status` says why) or does not know the
        license (a file of a license this server does not manage: nothing to say). The file
        stays usable offline in every case."""
        try:
            await asyncio.to_thread(self.activation.activate, license_key, modules=self._modules())
        except Offline as exc:
            log.info("online activation not possible now: %s", exc.reason)
            return False
        except NotFound as exc:
            log.info("the license server does not manage this license: %s", exc.reason)
            return None
        except LicenseError as exc:
            log.warning("online activation refused: %s", exc.reason)
            self._refused(exc)
            return None
        self.status = OnlineStatus(checked_at=self._clock.now())
        return True

    def _refused(self, exc: LicenseError) -> None:
        why = Reason(N_("license_online.refused"), {"reason": problem_reason(exc)})
        self.status = replace(self.status, refusal=why)

    async def _activate_kept(self) -> bool | None:
        """:meth:`activate` with the kept file's key."""
        key = self.activation.store.kept_key()
        return None if key is None else await self.activate(key)

    async def _run(self) -> None:
        interval: float = DEFAULT_INTERVAL_S
        if not self.activated:
            activated = await self._activate_kept()
            await self._emit(OnlineEvent(self.status))
            if activated is None:
                return  # refused: once per activation; the file works offline
        while True:
            await self._timer.wait(interval)
            try:
                outcome = await self.beat()
            except Exception:
                # A heartbeat must never end the loop: the next one may work.
                log.exception("the heartbeat failed")
                continue
            if outcome is None:
                return
            interval = max(MIN_INTERVAL_S, outcome.next_heartbeat_s or DEFAULT_INTERVAL_S)

    async def beat(self) -> HeartbeatOutcome | None:
        """One heartbeat and its consequences; ``None`` when heartbeats end (refused)."""
        if not self.activated:
            # Unreachable at the first activation: try again now.
            activated = await self._activate_kept()
            await self._emit(OnlineEvent(self.status))
            return None if activated is None else HeartbeatOutcome(reached=activated)
        try:
            outcome = await asyncio.to_thread(self.activation.heartbeat, modules=self._modules())
        except LicenseError as exc:
            # Said in the panel; tried again later (a rate limit, a server in trouble).
            log.warning("heartbeat refused: %s", exc.reason)
            self._refused(exc)
            await self._emit(OnlineEvent(self.status))
            return HeartbeatOutcome(reached=False)
        if not outcome.reached:
            await self._emit(OnlineEvent(self.status))
            return outcome
        self.status = OnlineStatus(checked_at=self._clock.now())
        # The server freed this machine's activation: take it again, once.
        if outcome.must_reactivate and await self._activate_kept() is None:
            await self._emit(OnlineEvent(self.status))
            return None
        new_file = kept_text(self.activation.store) if outcome.new_file_version else None
        state = outcome.state if outcome.state in REFUSING_STATES else None
        news, self._refused_state = state if state != self._refused_state else None, state
        await self._emit(OnlineEvent(self.status, new_file=new_file, refused_state=news))
        # A revocation is final; a suspension may be lifted and an expired license renewed,
        # which later heartbeats hear.
        return None if state == "revoked" else outcome

    async def _emit(self, event: OnlineEvent) -> None:
        if self._handler is not None:
            await self._handler(event)


def kept_text(store: LicenseFileStore) -> str | None:
    """The text of the file ``store`` keeps (a heartbeat stored a newer one there)."""
    try:
        document = json.loads(store.path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    text = document.get("file") if isinstance(document, dict) else None
    return text if isinstance(text, str) else None
