"""A bad network between the agent and the server: the journal still makes usage exact.

The agent's usage journal and its HTTP backend talk to a real server process (2 workers,
PostgreSQL) through a loopback proxy that, batch after batch, drops connections, delays them,
swallows them (a black hole: the client times out) or lets a request through and loses the
answer. A batch whose reserve or settle failed is retried at once, or left for the next start.
Afterwards the journal is reopened (as at a restart) and settles what was left open; then the
server's count equals exactly the messages the journal recorded as sent, nothing is held, and
``used + held <= limit`` held at every step.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from pathlib import Path

import httpx
import pytest

from agent.errors import Offline
from agent.journal import EntryState, Outcome, UsageJournal
from agent.usage_http import HttpUsageBackend
from app.clock import SystemAsyncClock
from tests.helpers.api import fingerprint
from tests.helpers.reliability_network import (
    Customer,
    Fault,
    FlakyProxy,
    shared_customer,
)
from tests.helpers.reliability_report import Report

SEED = 20261130
BATCHES = 30
MAX_BATCH = 10
LIMIT = BATCHES * MAX_BATCH
#: Long enough for a loaded machine to answer through the proxy, short for a black hole.
TIMEOUT = 1.0
FAULTS = (Fault.PASS, Fault.DELAY, Fault.DROP, Fault.BLACKHOLE, Fault.LOSE_ANSWER)
WEIGHTS = (3, 2, 2, 1, 3)


customer = shared_customer(LIMIT)
pytestmark = pytest.mark.postgres


async def _batch(
    journal: UsageJournal,
    usage: HttpUsageBackend,
    proxy: FlakyProxy,
    rng: random.Random,
    tally: Counter[str],
) -> int:
    """One batch through the faults the seed picks; returns the sends it recorded."""
    messages = rng.randint(1, MAX_BATCH)
    reserve_fault, settle_fault = rng.choices(FAULTS, WEIGHTS, k=2)
    retry_reserve, retry_settle = rng.random() < 0.5, rng.random() < 0.5
    proxy.set(reserve_fault)
    cid = journal.begin(messages)
    try:
        entry = await journal.reserve(usage, messages, cid)
    except Offline:
        tally[f"reserve offline ({reserve_fault})"] += 1
        if not retry_reserve:
            return 0  # left ``reserving``: the next start replays it and rolls it back
        proxy.set(Fault.PASS)
        try:
            entry = await journal.reserve(usage, messages, cid)  # the same request again
        except Offline:  # a loaded machine outlasted the timeout: the next start settles it
            tally["retry offline"] += 1
            return 0
        tally["reserve retried"] += 1
    sent = rng.randint(0, messages)
    for i in range(sent):
        journal.record_sent(entry.correlation_id, f"{cid}:{i}")
    proxy.set(settle_fault)
    try:
        await journal.finish(usage, cid)
    except Offline:
        tally[f"settle offline ({settle_fault})"] += 1
        if retry_settle:
            proxy.set(Fault.PASS)
            try:
                await journal.finish(usage, cid)  # exactly the sealed request again
                tally["settle retried"] += 1
            except Offline:
                tally["retry offline"] += 1
    return sent


async def _run(customer: Customer, proxy: FlakyProxy, path: Path) -> tuple[int, Counter[str]]:
    rng = random.Random(SEED)
    tally: Counter[str] = Counter()
    token = customer.login(fingerprint())
    journal = UsageJournal(path, clock=SystemAsyncClock())
    recorded = 0
    async with httpx.AsyncClient(base_url=proxy.url, timeout=TIMEOUT) as client:
        usage = HttpUsageBackend(client, token)
        for _ in range(BATCHES):
            recorded += await _batch(journal, usage, proxy, rng, tally)
            used, held, limit = customer.quota()
            assert used + held <= limit, (used, held, limit)
    journal.close()
    # The next start: the network is back, a new journal object settles what was left open.
    proxy.set(Fault.PASS)
    reopened = UsageJournal(path, clock=SystemAsyncClock())
    try:
        async with httpx.AsyncClient(base_url=proxy.url, timeout=60) as client:
            outcomes = await reopened.settle(HttpUsageBackend(client, token))
        assert all(o.outcome in (Outcome.COMMITTED, Outcome.ROLLED_BACK) for o in outcomes), [
            (o.outcome, o.detail) for o in outcomes
        ]
        tally["settled at restart"] = len(outcomes)
        entries = reopened.entries()
        assert not [e for e in entries if e.is_open]
        journal_sent = sum(e.sent for e in entries)
        assert journal_sent == recorded
        counted = sum(e.used or 0 for e in entries if e.state is EntryState.COMMITTED)
        assert counted == recorded
    finally:
        reopened.close()
    return recorded, tally


def test_network_cuts_between_agent_and_server(
    customer: Customer, tmp_path: Path, reliability: Report
) -> None:
    with FlakyProxy(customer.server.url) as proxy:
        recorded, tally = asyncio.run(_run(customer, proxy, tmp_path / "journal.sqlite"))
        seen = dict(proxy.seen)
    used, held, limit = customer.quota()
    assert (used, held) == (recorded, 0), (used, held, recorded, tally)
    _count, committed = customer.committed()
    assert committed == recorded
    offline = sum(n for what, n in tally.items() if "offline" in what)
    # The seed must really have cut things, or this proved nothing.
    assert offline >= 10 and tally["settled at restart"] >= 3, tally
    assert seen.get("answers_lost", 0) and seen.get("blackholed", 0) and seen.get("dropped", 0)
    reliability.record(
        "network cut between agent and server",
        tried=(
            f"{BATCHES} reserve → send → commit/rollback batches through a loopback proxy to a "
            f"2-worker server on PostgreSQL; {offline} calls failed offline "
            f"({seen.get('dropped', 0)} connections reset, {seen.get('blackholed', 0)} requests "
            f"black-holed, {seen.get('answers_lost', 0)} answers lost after the server acted, "
            f"{seen.get('delayed', 0)} chunks delayed); {tally['reserve retried']} reserves and "
            f"{tally['settle retried']} settles retried at once, {tally['settled at restart']} "
            "left to the journal at restart"
        ),
        checked=(
            f"server used = {used} = messages the journal recorded as sent, held = 0, "
            f"used + held ≤ limit ({limit}) after every batch, no journal entry left open"
        ),
        lost="nothing",
    )
