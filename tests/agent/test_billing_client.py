"""AsyncBillingClient over HTTP against a real server with the fake providers (SQLite and
PostgreSQL): subscribe, pay at the fake Stripe, the subscription and the license follow; a POST
retried after a server error sends the same Idempotency-Key and is done once."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path

import pytest

from agent.billing_client import AsyncBillingClient
from agent.errors import NotFound, UnexpectedResponse
from agent.protocol import CancelWhen, ChangeWhen, ProviderName, SubscriptionState
from tests.helpers.api import PASSWORD
from tests.helpers.billing_agent import agent_for
from tests.helpers.billing_shop import Shop

S = SubscriptionState


def email() -> str:
    return f"agent-{secrets.token_hex(4)}@example.com"


def test_subscribe_pay_at_the_fake_and_the_subscription_is_active(
    shop: Shop, tmp_path: Path
) -> None:
    client, transport = agent_for(shop, tmp_path)

    async def flow() -> None:
        async with client:
            await client.register(email(), PASSWORD)
            billing = AsyncBillingClient(client)
            offered = {p.name: p for p in (await billing.plans()).plans}
            assert offered["pro"].price_minor == 99_000 and offered["pro"].currency == "RUB"
            assert await billing.status() is None
            assert (await billing.invoices()).invoices == []

            created = await billing.create("pro", ProviderName.STRIPE)
            assert created.subscription.state is S.INCOMPLETE
            assert created.checkout_url.startswith(shop.fakes.settings["stripe_api_base"])
            shop.pay_stripe()

            sub = await billing.status()
            assert sub is not None and sub.state is S.ACTIVE and sub.id == created.subscription.id
            license_ = await client.license()
            assert (license_.info.plan, license_.info.status) == ("pro", "active")
            page = await billing.invoices(limit=1)
            (invoice,) = page.invoices
            assert invoice.id == created.invoice_id and invoice.status == "paid"
            assert [(p.status, p.amount_minor) for p in invoice.payments] == [("succeeded", 99_000)]
            assert page.next_before is None

            # The moves, each with a key of its own; a refusal keeps the server's code.
            assert (await billing.pause()).state is S.PAUSED
            assert (await billing.resume()).state is S.ACTIVE
            with pytest.raises(UnexpectedResponse) as refused:
                await billing.renew()
            assert refused.value.problem_code == "validation_error"
            with pytest.raises(NotFound):
                await billing.preview_change("no-such-plan", ChangeWhen.PERIOD_END)
            ended = await billing.cancel(CancelWhen.PERIOD_END)
            assert ended.cancel_at_period_end and ended.state is S.ACTIVE

    asyncio.run(flow())
    keys = [key for sent, key in transport.sent if sent.startswith("POST /subscriptions/")]
    moves = [k for k in keys if k is not None]
    # create, pause, resume, renew, cancel: one fresh key each; the preview needs none.
    assert len(moves) == 5 and len(set(moves)) == 5


def test_a_post_retried_after_a_server_error_reuses_its_key_and_is_done_once(
    shop: Shop, tmp_path: Path
) -> None:
    client, transport = agent_for(shop, tmp_path)
    transport.lose_once.add("/subscriptions/create")

    async def flow() -> None:
        async with client:
            await client.register(email(), PASSWORD)
            billing = AsyncBillingClient(client)
            created = await billing.create("pro", ProviderName.STRIPE)
            sub = await billing.status()
            assert sub is not None and sub.id == created.subscription.id

    asyncio.run(flow())
    first, retry = transport.keys("POST /subscriptions/create")
    assert first is not None and first == retry
    # The server did it once: one subscription, one checkout at the provider.
    assert len(shop.fakes.stripe.of_type("checkout.session")) == 1
