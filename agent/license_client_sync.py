"""A synchronous facade over :class:`agent.license_client.AsyncLicenseClient`, for scripts.

:mod:`agent.client` re-exports :class:`LicenseClient`.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, TypeVar

from agent.license_client import AsyncLicenseClient, License
from agent.protocol import DeviceList, ReservationResponse, SettleResponse, TokenResponse
from agent.tokens import LeaseClaims

_T = TypeVar("_T")


class LicenseClient:
    """A synchronous facade over :class:`AsyncLicenseClient` for scripts.

    It runs the async client on a private event loop in this thread; do not use it from inside a
    running event loop. Takes the same arguments as :class:`AsyncLicenseClient`.
    """

    def __init__(self, api_base_url: str, **kwargs: Any) -> None:
        """Build the async client on a private loop (same arguments)."""
        self._loop = asyncio.new_event_loop()
        self._lock = threading.Lock()

        async def build() -> AsyncLicenseClient:
            return AsyncLicenseClient(api_base_url, **kwargs)

        self.client = self._loop.run_until_complete(build())

    def _run(self, coro: Coroutine[Any, Any, _T]) -> _T:
        with self._lock:
            return self._loop.run_until_complete(coro)

    def __enter__(self) -> LicenseClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the client and its private loop."""
        if not self._loop.is_closed():
            self._run(self.client.aclose())
            self._loop.close()

    def register(self, email: str, password: str) -> TokenResponse:
        """See :meth:`AsyncLicenseClient.register`."""
        return self._run(self.client.register(email, password))

    def login(self, email: str, password: str) -> TokenResponse:
        """See :meth:`AsyncLicenseClient.login`."""
        return self._run(self.client.login(email, password))

    def refresh(self) -> TokenResponse:
        """See :meth:`AsyncLicenseClient.refresh`."""
        return self._run(self.client.refresh())

    def logout(self) -> None:
        """See :meth:`AsyncLicenseClient.logout`."""
        self._run(self.client.logout())

    def license(self) -> License:
        """See :meth:`AsyncLicenseClient.license`."""
        return self._run(self.client.license())

    def offline_license(self) -> LeaseClaims:
        """See :meth:`AsyncLicenseClient.offline_license`."""
        return self.client.offline_license()

    def devices(self) -> DeviceList:
        """See :meth:`AsyncLicenseClient.devices`."""
        return self._run(self.client.devices())

    def deactivate_device(self, device_id: str) -> None:
        """See :meth:`AsyncLicenseClient.deactivate_device`."""
        self._run(self.client.deactivate_device(device_id))

    def reserve(self, messages: int, correlation_id: str) -> ReservationResponse:
        """See :meth:`AsyncLicenseClient.reserve`."""
        return self._run(self.client.reserve(messages, correlation_id))

    def commit(self, reservation_id: str, used: int) -> SettleResponse:
        """See :meth:`AsyncLicenseClient.commit`."""
        return self._run(self.client.commit(reservation_id, used))

    def rollback(self, reservation_id: str) -> SettleResponse:
        """See :meth:`AsyncLicenseClient.rollback`."""
        return self._run(self.client.rollback(reservation_id))
