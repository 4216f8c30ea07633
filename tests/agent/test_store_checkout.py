"""Buying points from the agent against a real server and the fake RuStore (SQLite and
PostgreSQL): the demo's store checkout starts a purchase in the account's name; ``/points/buy``
says "pending" until the buyer pays on the store's page, then credits once; a purchase cancelled
there is refused with its reason kept; an unknown product and an unreachable store are errors."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path

import httpx
import pytest

from agent.errors import Offline, UnexpectedResponse
from agent.points_client import AsyncPointsClient
from agent.protocol import ProductKind, StoreName
from agent.store_checkout import DemoStoreCheckout
from server_stub.services.store.products import Product
from tests.helpers.api import PASSWORD
from tests.helpers.billing_agent import agent_for
from tests.helpers.billing_shop import Shop

POINTS = Product("points_250", "consumable", "250 points", 19900, "RUB", 250, None, True)


def _press(url: str, outcome: str) -> None:
    assert httpx.post(url, data={"outcome": outcome}).status_code == 303


def test_a_store_purchase_is_pending_until_paid_then_credited_once(
    shop: Shop, tmp_path: Path
) -> None:
    client, _transport = agent_for(shop, tmp_path)
    store = shop.fakes.rustore
    assert store is not None
    shop.services.store.products.create("test", POINTS)
    store.add_product(POINTS.id, POINTS.price_minor, POINTS.currency)
    checkout = DemoStoreCheckout(store.base_url)

    async def flow() -> None:
        async with client:
            await client.register(f"buyer-{secrets.token_hex(4)}@example.com", PASSWORD)
            points = AsyncPointsClient(client)
            (listed,) = (await points.products()).products
            assert (listed.id, listed.kind) == (POINTS.id, ProductKind.CONSUMABLE)
            assert listed.points == 250
            user_id = (await points.profile()).id
            invoice = await checkout.start(POINTS.id, user_id)
            assert invoice.store is StoreName.RUSTORE
            assert invoice.checkout_url == store.checkout_url(invoice.purchase_id)
            made = store.purchases[invoice.purchase_id]
            assert (made["developerPayload"], made["amount"]) == (user_id, 19900)

            waiting = await points.buy(StoreName.RUSTORE, invoice.purchase_id, POINTS.id)
            assert waiting.pending and waiting.status == "CREATED" and waiting.points == 0
            _press(invoice.checkout_url, "pay")
            bought = await points.buy(StoreName.RUSTORE, invoice.purchase_id, POINTS.id)
            assert not bought.pending and bought.status == "CONFIRMED"
            assert (bought.points, bought.balance.balance) == (250, 250)
            again = await points.buy(StoreName.RUSTORE, invoice.purchase_id, POINTS.id)
            assert again.replayed and again.balance.balance == 250

            cancelled = await checkout.start(POINTS.id, user_id)
            _press(cancelled.checkout_url, "cancel")
            with pytest.raises(UnexpectedResponse) as refused:
                await points.buy(StoreName.RUSTORE, cancelled.purchase_id, POINTS.id)
            assert refused.value.problem_code == "validation_error"
            assert refused.value.problem_reason == "purchase_not_paid"

            with pytest.raises(UnexpectedResponse):
                await checkout.start("not_sold", user_id)
            assert (await points.balance()).balance == 250
        await checkout.aclose()

    asyncio.run(flow())


def test_an_unreachable_store_is_offline() -> None:
    async def flow() -> None:
        checkout = DemoStoreCheckout("http://127.0.0.1:9")
        with pytest.raises(Offline):
            await checkout.start(POINTS.id, "user")
        await checkout.aclose()

    asyncio.run(flow())
