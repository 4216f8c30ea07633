"""The periodic sweeper releases expired holds without any request arriving."""

from __future__ import annotations

import asyncio
import threading

from sqlalchemy import select

from server_stub.app import _sweep_forever
from server_stub.models import UsagePeriod
from tests.helpers.api import bearer, register
from tests.helpers.backend import BackendFactory


def test_periodic_sweeper_releases_expired_holds(make_backend: BackendFactory) -> None:
    backend = make_backend()  # its own sweeper waits an hour: only ours below runs
    h = bearer(register(backend.client)["token"])
    r = backend.client.post(
        "/usage/reserve", json={"messages": 7, "correlation_id": "sweep-0001"}, headers=h
    )
    assert r.status_code == 201
    backend.clock.advance(15 * 60 + 1)

    reservations = backend.services.reservations
    released: list[int] = []
    swept = threading.Event()
    original = reservations.sweep

    def observed_sweep(limit: int = 200) -> int:
        count = original(limit)
        released.append(count)
        if count:
            swept.set()
        return count

    reservations.sweep = observed_sweep  # type: ignore[method-assign]

    async def run_until_swept() -> None:
        task = asyncio.create_task(_sweep_forever(backend.services, 0.01))
        try:
            assert await asyncio.to_thread(swept.wait, 30), "the sweeper never released the hold"
        finally:
            task.cancel()

    asyncio.run(run_until_swept())
    assert sum(released) == 1
    with backend.services.ctx.read() as session:
        period = session.scalars(select(UsagePeriod)).one()
        assert (period.used, period.held) == (0, 0)
