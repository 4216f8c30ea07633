"""The periodic sweeper releases expired holds without any request arriving."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

from sqlalchemy import select

from server_stub.app import _sweep_forever
from server_stub.models import UsagePeriod
from server_stub.sweeper_lease import make_sweeper_lease
from tests.conftest import ONLY_POSTGRES, Backend, BackendFactory
from tests.helpers.api import bearer, register


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


@ONLY_POSTGRES
def test_one_sweeper_runs_across_processes_and_another_takes_over(
    make_backend: BackendFactory,
) -> None:
    first, second = make_backend(), make_backend()  # their own sweepers wait an hour
    url = first.services.ctx.engine.url.render_as_string(hide_password=False)
    rounds = {"first": 0, "second": 0}
    progress = threading.Condition()

    def counting(name: str, backend: Backend) -> None:
        original = backend.services.reservations.sweep

        def sweep(limit: int = 200) -> int:
            with progress:
                rounds[name] += 1
                progress.notify_all()
            return original(limit)

        backend.services.reservations.sweep = sweep  # type: ignore[method-assign]

    counting("first", first)
    counting("second", second)

    def wait_for(condition: Callable[[], bool]) -> bool:
        with progress:
            return progress.wait_for(condition, timeout=30)

    async def scenario() -> None:
        leases = {"first": make_sweeper_lease(url), "second": make_sweeper_lease(url)}
        tasks = {
            name: asyncio.create_task(_sweep_forever(b.services, 0.01, leases[name]))
            for name, b in (("first", first), ("second", second))
        }
        try:
            assert await asyncio.to_thread(wait_for, lambda: sum(rounds.values()) >= 20)
            leader = max(rounds, key=lambda name: rounds[name])
            other = "second" if leader == "first" else "first"
            assert rounds[other] == 0, rounds
            # The leader stops (a process ending): the other process sweeps from then on.
            tasks[leader].cancel()
            await asyncio.gather(tasks[leader], return_exceptions=True)
            await asyncio.to_thread(leases[leader].release)
            assert await asyncio.to_thread(wait_for, lambda: rounds[other] >= 5)
        finally:
            for task in tasks.values():
                task.cancel()
            await asyncio.gather(*tasks.values(), return_exceptions=True)
            for lease in leases.values():
                await asyncio.to_thread(lease.release)

    asyncio.run(scenario())
