"""Buying points in the store from the desktop (docs/points.md, "Buying points from the
desktop"), a part of :class:`app.core.Core` like :mod:`app.core_billing`, which derives from it.

A purchase is started in the store (:mod:`agent.store_checkout`: the seam where a store's SDK
would be; the demo's is the fake RuStore), paid by the buyer on the store's page in the browser,
and then verified by the server (``POST /points/buy``), which credits its points once. Until the
buyer has paid, the server answers "pending" and the tab asks again; the store's notification to
the server may credit first, and the next ask then replays the same credit.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from agent.errors import Offline, UnexpectedResponse
from agent.protocol import StoreName

from .catalog import N_, story
from .core_types import NotSignedIn, PurchaseRefused

if TYPE_CHECKING:
    from agent.client import AsyncLicenseClient
    from agent.points_client import AsyncPointsClient
    from agent.store_checkout import StoreCheckout

    from .core_billing import BillingSnapshot
    from .core_config import CoreConfig

log = logging.getLogger("tgflow.core")

#: The server's reasons for refusing a store purchase for good, and what the window says.
_REFUSALS: Final = {
    "purchase_not_paid": N_("points.buy.not_paid"),
    "purchase_mismatch": N_("points.buy.mismatch"),
    "purchase_unknown": N_("points.buy.unknown"),
}


@dataclass(frozen=True)
class PointsPurchase:
    """A purchase started in the store, waiting for the buyer to pay at ``checkout_url``."""

    store: StoreName
    purchase_id: str
    product_id: str
    checkout_url: str


@dataclass(frozen=True)
class Bought:
    """A purchase the server verified and credited (``replayed``: the store's notification had
    credited it first), and the tab reloaded."""

    points: int
    replayed: bool
    snapshot: BillingSnapshot


class CorePoints:
    """The points part of the core: its client, and buying points in the store."""

    client: AsyncLicenseClient
    config: CoreConfig
    _signed_in: bool
    _points_client: AsyncPointsClient | None = None
    _store_checkout: StoreCheckout | None = None

    def _need_account(self) -> None:
        # A license file (no account) is paid for outside the program: nothing to bill.
        if not self._signed_in:
            raise NotSignedIn("sign in with an account first")

    @property
    def points(self) -> AsyncPointsClient:
        """The points client, on the license client's session (built on first use)."""
        if self._points_client is None:
            from agent.points_client import AsyncPointsClient

            self._points_client = AsyncPointsClient(self.client)
        return self._points_client

    @property
    def sells_points(self) -> bool:
        """Whether points can be bought here (a store is set up: the demo's)."""
        return self.config.store_checkout_url is not None

    async def billing_snapshot(self) -> BillingSnapshot:
        raise NotImplementedError  # CoreBilling's

    async def start_points_purchase(self, product_id: str) -> PointsPurchase:
        """Start buying ``product_id`` in the store, in this account's name; returns the
        purchase and the store's page where it is paid."""
        self._need_account()
        checkout = self._checkout()
        user_id = (await self.points.profile()).id
        try:
            invoice = await checkout.start(product_id, user_id)
        except Offline as exc:
            log.info("the store is unreachable: %s", exc)
            raise PurchaseRefused(N_("points.buy.store_unreachable")) from exc
        except UnexpectedResponse as exc:
            log.warning("the store refused to start a purchase: %s", exc)
            raise PurchaseRefused(N_("points.buy.store_refused")) from exc
        story(log, N_("log.points.checkout"), product=product_id)
        return PointsPurchase(invoice.store, invoice.purchase_id, product_id, invoice.checkout_url)

    async def settle_points_purchase(self, purchase: PointsPurchase) -> Bought | None:
        """Have the server verify ``purchase`` and credit it. ``None``: not paid yet, or the
        server or the store cannot be reached now (ask again later). Raises
        :class:`PurchaseRefused` when it ended unpaid or cannot be credited."""
        self._need_account()
        try:
            answer = await self.points.buy(
                purchase.store, purchase.purchase_id, purchase.product_id
            )
        except Offline as exc:
            log.info("the points purchase is not verified yet: %s", exc)
            return None
        except UnexpectedResponse as exc:
            if exc.problem_code == "service_unavailable":  # the store, for a moment
                log.info("the points purchase is not verified yet: %s", exc)
                return None
            key = _REFUSALS.get(exc.problem_reason or "")
            if exc.problem_code == "validation_error" and key is not None:
                raise PurchaseRefused(key) from exc
            raise
        if answer.pending:
            return None
        story(log, N_("log.points.bought"), points=answer.points)
        return Bought(answer.points, answer.replayed, await self.billing_snapshot())

    async def close_store_checkout(self) -> None:
        if self._store_checkout is not None:
            await self._store_checkout.aclose()
            self._store_checkout = None

    def _checkout(self) -> StoreCheckout:
        if self._store_checkout is None:
            url = self.config.store_checkout_url
            if url is None:
                raise PurchaseRefused(N_("points.buy.no_store"))
            from agent.store_checkout import DemoStoreCheckout

            self._store_checkout = DemoStoreCheckout(url)
        return self._store_checkout
