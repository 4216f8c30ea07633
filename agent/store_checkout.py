"""Starting a store purchase from the desktop: the seam where a store's SDK would be.

On a phone, RuStore's SDK starts a purchase, shows the store's payment sheet and hands the app
the purchase's invoice id; the app then asks the server to verify it (``POST /points/buy``,
docs/points.md). A desktop has no such SDK, so :class:`StoreCheckout` stands for it: start a
purchase of a product in a user's name and get back the store's purchase id and the page where
the buyer pays. :class:`DemoStoreCheckout` is the demo's, talking to the fake RuStore
(``server_stub/fake_providers/rustore_fake.py``); a real store integration is another class
with the same two methods. The server never takes the answer's word: it asks the store itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import httpx

from agent.errors import Offline, UnexpectedResponse
from agent.protocol import StoreName

#: How long the store may take to start a purchase (seconds).
START_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class StoreInvoice:
    """A purchase the store started: its id (what ``/points/buy`` verifies) and the page where
    the buyer pays (opened in the browser)."""

    store: StoreName
    purchase_id: str
    checkout_url: str


class StoreCheckout(Protocol):
    """Starts purchases in a store (see the module's docstring)."""

    store: StoreName

    async def start(self, product_id: str, user_id: str) -> StoreInvoice:
        """Start buying ``product_id`` in the name of ``user_id`` (RuStore's
        ``developerPayload``: the server credits no other account). Raises
        :class:`agent.errors.Offline` when the store cannot be reached and
        :class:`agent.errors.UnexpectedResponse` when it refuses."""
        ...

    async def aclose(self) -> None: ...


class DemoStoreCheckout:
    """The demo's store: the fake RuStore at ``base_url`` (its ``POST /demo/invoices``)."""

    store = StoreName.RUSTORE

    def __init__(self, base_url: str, *, transport: httpx.AsyncBaseTransport | None = None):
        """Talk to the fake at ``base_url`` (``transport``: a test's)."""
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"), timeout=START_TIMEOUT_S, transport=transport
        )

    async def start(self, product_id: str, user_id: str) -> StoreInvoice:
        """See :meth:`StoreCheckout.start`."""
        body = {"product_code": product_id, "developer_payload": user_id}
        try:
            response = await self._http.post("/demo/invoices", json=body)
        except httpx.TransportError as exc:
            raise Offline(f"the store cannot be reached: {type(exc).__name__}: {exc}") from exc
        try:
            envelope = response.json()
            answer = envelope["body"] if response.is_success else None
            if answer is None:
                raise UnexpectedResponse(
                    f"the store refused to start a purchase of {product_id!r}: "
                    f"{envelope.get('code')} {envelope.get('message')}",
                    response.status_code,
                )
            return StoreInvoice(self.store, str(answer["invoice_id"]), str(answer["checkout_url"]))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise UnexpectedResponse(
                f"the store's answer is not a started purchase (HTTP {response.status_code})",
                response.status_code,
            ) from exc

    async def aclose(self) -> None:
        await self._http.aclose()
