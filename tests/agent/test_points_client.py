"""AsyncPointsClient over HTTP against a real server (SQLite and PostgreSQL): the profile and the
balance of granted points, a top-up converting points into messages of the period at the plan's
rate, the history filtered by kind, refusals keeping the server's code; a top-up retried after a
server error sends the same idempotency key and converts once."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path

import pytest

from agent.errors import UnexpectedResponse
from agent.points_client import AsyncPointsClient
from agent.protocol import PointsKind
from server_stub.services.billing.plans import PlanChanges
from server_stub.services.points.ledger import Kind
from tests.helpers.api import PASSWORD
from tests.helpers.billing_agent import agent_for
from tests.helpers.billing_shop import Shop

RATE = 4


def _grant_and_price(shop: Shop, user_id: str, plan: str, points: int) -> None:
    """``points`` granted to the user; their plan sells :data:`RATE` messages a point."""
    shop.services.points.credit(user_id, points, kind=Kind.GRANT, actor="test")
    shop.services.billing.plans.change("test", plan, PlanChanges(topup_messages_per_point=RATE))


def test_balance_topup_history_and_refusals(shop: Shop, tmp_path: Path) -> None:
    client, _transport = agent_for(shop, tmp_path)

    async def flow() -> None:
        async with client:
            await client.register(f"points-{secrets.token_hex(4)}@example.com", PASSWORD)
            points = AsyncPointsClient(client)
            profile = await points.profile()
            assert profile.points.balance == 0 and profile.plan is not None
            before = (await client.license()).info.quota.limit
            _grant_and_price(shop, profile.id, profile.plan, 100)
            assert (await points.balance()).balance == 100

            done = await points.topup(30)
            assert (done.messages, done.balance.balance, done.replayed) == (120, 70, False)
            assert done.entry.kind is PointsKind.TOPUP and done.entry.amount == -30
            assert done.quota.limit == before + 120
            assert (await client.license()).info.quota.limit == before + 120

            page = await points.history(limit=1)
            assert [e.kind for e in page.entries] == [PointsKind.TOPUP]
            assert page.next_cursor is not None
            older = await points.history(limit=1, cursor=page.next_cursor)
            assert [(e.kind, e.amount) for e in older.entries] == [(PointsKind.GRANT, 100)]
            grants = await points.history(kinds=[PointsKind.GRANT, PointsKind.SPEND])
            assert [e.kind for e in grants.entries] == [PointsKind.GRANT]

            with pytest.raises(UnexpectedResponse) as refused:
                await points.topup(71)
            assert refused.value.problem_code == "insufficient_points"
            shop.services.billing.plans.change(
                "test", profile.plan, PlanChanges(topup_messages_per_point=0)
            )
            with pytest.raises(UnexpectedResponse) as refused:
                await points.topup(1)
            assert refused.value.problem_code == "validation_error"
            assert (await points.balance()).balance == 70

    asyncio.run(flow())


def test_a_topup_retried_after_a_server_error_is_converted_once(shop: Shop, tmp_path: Path) -> None:
    client, transport = agent_for(shop, tmp_path)
    transport.lose_once.add("/usage/topup")

    async def flow() -> None:
        async with client:
            await client.register(f"points-{secrets.token_hex(4)}@example.com", PASSWORD)
            points = AsyncPointsClient(client)
            profile = await points.profile()
            assert profile.plan is not None
            _grant_and_price(shop, profile.id, profile.plan, 10)
            done = await points.topup(3)
            # The first answer was lost: the repeat under the same key is the first outcome.
            assert done.replayed and done.messages == 3 * RATE
            assert (await points.balance()).balance == 7
            history = await points.history(kinds=[PointsKind.TOPUP])
            assert len(history.entries) == 1

    asyncio.run(flow())
    assert len(transport.keys("POST /usage/topup")) == 2
