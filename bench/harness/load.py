"""The load driver: N connections, each running one operation in a loop for a fixed time, spread
round-robin over one or several server ports, with latencies, failures, the servers' CPU and RSS
(a server is its process and all its children: ``--workers`` forks)."""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from bench.harness.client import Connection, HttpError
from bench.harness.procfs import (
    machine_cpu_times,
    proc_status_kb,
    process_tree,
    processes_cpu_seconds,
)

REQUEST_TIMEOUT_S = 10.0
#: Upper bound on operations per connection and scenario, so that no loop is unbounded even if the
#: clock misbehaves; far above what one connection can do in the configured time.
MAX_OPS_PER_SECOND_PER_CONN = 20_000

#: One operation on a connection: returns True when it succeeded. It appends the latencies of its
#: requests (seconds) to the list it is given, so a pair records reserve and commit separately.
Operation = Callable[[Connection, list[float]], Awaitable[bool]]


def timed(next_raw: Callable[[], bytes], expected: int = 200) -> Operation:
    """One request per operation, ``next_raw()`` its bytes (a new key, the next token…); it
    succeeded when the status is ``expected``."""

    async def op(conn: Connection, request_latencies: list[float]) -> bool:
        raw = next_raw()
        start = time.perf_counter()
        status, _ = await conn.request(raw)
        request_latencies.append(time.perf_counter() - start)
        return status == expected

    return op


def single_get(raw: bytes, expected: int = 200) -> Operation:
    return timed(lambda: raw, expected)


@dataclass
class Sample:
    ok: int = 0
    failed: int = 0
    op_latencies: list[float] = field(default_factory=list)
    request_latencies: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)

    def fail(self, kind: str) -> None:
        self.failed += 1
        self.errors[kind] = self.errors.get(kind, 0) + 1


async def _drive(conn: Connection, op: Operation, seconds: float, sample: Sample) -> None:
    deadline = time.perf_counter() + seconds
    for _ in range(max(1, int(seconds * MAX_OPS_PER_SECOND_PER_CONN))):
        start = time.perf_counter()
        if start >= deadline:
            return
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT_S):
                ok = await op(conn, sample.request_latencies)
        except (OSError, EOFError, HttpError, TimeoutError, ValueError, KeyError) as exc:
            # Start the next operation on a fresh connection: the old one is in an unknown state.
            sample.fail(type(exc).__name__)
            await conn.close()
            continue
        sample.op_latencies.append(time.perf_counter() - start)
        if ok:
            sample.ok += 1
        else:
            sample.fail("unexpected status")


@dataclass(frozen=True)
class Result:
    name: str
    unit: str
    seconds: float
    sample: Sample
    server_cpu_s: float | None
    client_cpu_s: float
    #: CPU seconds used on the whole machine during the window (all cores), when known.
    machine_cpu_s: float | None = None
    #: CPU seconds the hypervisor gave to other guests while this one wanted to run.
    steal_s: float | None = None
    #: Largest server RSS sampled during the measured window, in KiB.
    peak_rss_kb: int | None = None

    @property
    def other_cpu_s(self) -> float | None:
        """CPU used by neither server nor client: other work on this machine."""
        if self.machine_cpu_s is None or self.server_cpu_s is None:
            return None
        return max(0.0, self.machine_cpu_s - self.server_cpu_s - self.client_cpu_s)

    @property
    def disturbance(self) -> float:
        """Share of a core lost to other work here or to other guests (steal)."""
        return ((self.other_cpu_s or 0.0) + (self.steal_s or 0.0)) / self.seconds

    @property
    def rate(self) -> float:
        return self.sample.ok / self.seconds

    @property
    def request_rate(self) -> float:
        return len(self.sample.request_latencies) / self.seconds

    def p(self, q: float) -> float:
        return percentile(self.sample.op_latencies, q) * 1000

    def request_p(self, q: float) -> float:
        return percentile(self.sample.request_latencies, q) * 1000


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


async def run_scenario(
    name: str,
    unit: str,
    ports: Sequence[int],
    op: Operation,
    *,
    connections: int,
    warmup: float,
    seconds: float,
    server_pids: Sequence[int],
) -> Result:
    """Drive ``op`` on ``connections`` connections spread round-robin over ``ports``.

    Connection i goes to ``ports[i % len(ports)]``: with two single-worker servers on two ports,
    each gets exactly half of the connections (the kernel's accept balancing between the workers
    of one socket is not even). The servers' CPU and RSS are those of ``server_pids`` and every
    process below them.
    """
    conns = [Connection(ports[i % len(ports)]) for i in range(connections)]
    try:
        await asyncio.gather(*(c.open() for c in conns))
        if warmup > 0:
            scratch = Sample()
            await asyncio.gather(*(_drive(c, op, warmup, scratch) for c in conns))
        pids = [p for pid in server_pids for p in process_tree(pid)]
        sample = Sample()
        machine_before = machine_cpu_times()
        server_cpu = processes_cpu_seconds(pids)
        client_cpu = sum(os.times()[:2])
        started = time.perf_counter()
        rss_task = asyncio.create_task(_peak_rss_kb(pids, seconds))
        await asyncio.gather(*(_drive(c, op, seconds, sample) for c in conns))
        peak_rss_kb = await rss_task
        elapsed = time.perf_counter() - started
        client_used = sum(os.times()[:2]) - client_cpu
        server_after = processes_cpu_seconds(pids)
        machine_after = machine_cpu_times()
    finally:
        await asyncio.gather(*(c.close() for c in conns))
    server_used = (
        server_after - server_cpu if server_cpu is not None and server_after is not None else None
    )
    machine_used = steal = None
    if machine_before is not None and machine_after is not None:
        machine_used = machine_after[0] - machine_before[0]
        steal = machine_after[1] - machine_before[1]
    return Result(
        name, unit, elapsed, sample, server_used, client_used, machine_used, steal, peak_rss_kb
    )


async def _peak_rss_kb(pids: Sequence[int], seconds: float) -> int | None:
    """The largest VmRSS of any one of ``pids`` while the load runs, sampled ten times a second."""
    peak: int | None = None
    for _ in range(max(1, int(seconds * 10))):
        for pid in pids:
            rss = proc_status_kb(pid, "VmRSS")
            if rss is not None and (peak is None or rss > peak):
                peak = rss
        await asyncio.sleep(0.1)
    return peak


async def request_series(port: int, raw: bytes, count: int, expected: int = 200) -> Sample:
    """Send ``raw`` ``count`` times, one after another on one keep-alive connection: the
    latency a lone user sees (no concurrency), not a throughput."""
    sample = Sample()
    conn = Connection(port)
    op = single_get(raw, expected)
    try:
        for _ in range(count):
            try:
                async with asyncio.timeout(REQUEST_TIMEOUT_S):
                    ok = await op(conn, sample.request_latencies)
            except (OSError, EOFError, HttpError, TimeoutError, ValueError) as exc:
                sample.fail(type(exc).__name__)
                await conn.close()
                continue
            if ok:
                sample.ok += 1
            else:
                sample.fail("unexpected status")
    finally:
        await conn.close()
    return sample


T = TypeVar("T")


async def measured(
    name: str,
    ports: Sequence[int],
    op: Operation,
    args: argparse.Namespace,
    server_pids: Sequence[int],
    *,
    unit: str = "req",
    shown: str | None = None,
) -> Result:
    """Say what is measured (``shown``, else ``name``), then :func:`run_scenario` with the run's
    load options (``--connections``, ``--warmup``, ``--seconds``)."""
    print(
        f"  {shown or name}: {args.warmup:g} s warm-up, {args.seconds:g} s measured ...", flush=True
    )
    return await run_scenario(
        name,
        unit,
        ports,
        op,
        connections=args.connections,
        warmup=args.warmup,
        seconds=args.seconds,
        server_pids=server_pids,
    )


def run_loop(coro: Coroutine[None, None, T]) -> T:
    """Run on uvloop when it is installed: it keeps the load generator's own CPU cost low."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)
