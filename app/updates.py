"""The desktop's update check on the engine loop (docs/updates.md); no Qt.

The pinned verification, the replay rule and the once-a-day throttle are the agent's
(:class:`agent.updates.UpdateChecker`); this builds it from the program's settings (the API
base URL and the ``[license]`` pins) and gives it an HTTP client for each check.
"""

from __future__ import annotations

from pathlib import Path

import httpx

from agent.clock import Clock
from agent.key_pins import PinnedKeySet
from agent.updates import UpdateCheck, UpdateChecker

from . import __version__


class UpdateService:
    """Asks the backend for the newest release at most once a day, or when told to."""

    def __init__(
        self,
        api_base_url: str,
        pins: tuple[str, ...],
        data_dir: Path,
        clock: Clock,
        *,
        version: str = __version__,
    ) -> None:
        # The JWKS cache in the data dir is the one the license checks keep: one set of keys.
        keys = PinnedKeySet(api_base_url, pins, data_dir, clock=clock)
        self.checker = UpdateChecker(
            api_base_url, keys, data_dir, current_version=version, clock=clock
        )

    async def check(self, *, force: bool) -> UpdateCheck:
        """The automatic check (``force=False``: at most once a day) or Help → Check now."""
        async with httpx.AsyncClient() as client:
            return await self.checker.check(client, force=force)
