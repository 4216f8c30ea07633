"""The desktop killed (``kill -9``) mid-broadcast, several times, and restarted each time.

The desktop's engine runs as an OS process of its own (tests/helpers/reliability_desktop.py)
against a real server process (2 workers, PostgreSQL) and sends a 30-recipient broadcast in
batches of 8 through the simulated Telegram, whose record of deliveries is on disk. The test kills
it when the broadcast store shows a chosen number sent (none a multiple of the batch, so a batch is
open: quota held, sends journalled but not committed), restarts it, and lets the last run finish.

Afterwards every recipient received exactly one message, the server counted each sent message
exactly once (used = 30, nothing held) and ``used + held <= limit`` after every kill.

Where the kill lands: between two messages (the pacing pause is ~20 times longer than a send, and
the kill follows the store's record of the last send). The instant between Telegram accepting a
message and the journal's write of it is not covered: no client-side record can close it without
an idempotency key on Telegram's side (docs/agent.md, "Usage journal").
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import reliability_desktop as desktop
from tests.helpers.reliability_network import Customer, shared_customer
from tests.helpers.reliability_report import Report

#: The store's sent count at which each run is killed: each inside an open batch of 8.
KILL_AT = (3, 13, 22)
LIMIT = len(desktop.RECIPIENTS) + 10
DEADLINE = 120.0


customer = shared_customer(LIMIT)
pytestmark = pytest.mark.postgres


def _wait(proc: subprocess.Popen[bytes], done: Callable[[], bool], what: str, log: Path) -> None:
    """Until ``done()`` (state another process writes), the process alive, within the deadline."""
    deadline = time.monotonic() + DEADLINE
    while not done():
        assert proc.poll() is None, f"the desktop exited ({proc.returncode}) before {what}"
        assert time.monotonic() < deadline, f"no {what} within {DEADLINE} s:\n{log.read_text()}"
        time.sleep(0.005)  # polling another process's files: there is no event to wait on


def test_desktop_killed_mid_broadcast_and_restarted(
    customer: Customer, tmp_path: Path, reliability: Report
) -> None:
    data = tmp_path / "desktop"
    held_after_kill: list[int] = []
    for at in KILL_AT:
        proc = desktop.start(data, customer)
        try:
            log = sorted(data.glob("desktop-*.log"))[-1]
            _wait(proc, lambda at=at: desktop.sent_in_store(data) >= at, f"{at} sent", log)
        finally:
            proc.kill()  # SIGKILL: no finally, no atexit, no flush in the desktop process
            proc.wait(30)
        used, held, limit = customer.quota()
        assert used + held <= limit, (used, held, limit)
        held_after_kill.append(held)
        assert all(n == 1 for n in desktop.recorded(data).values()), desktop.recorded(data)

    proc = desktop.start(data, customer)
    assert proc.wait(DEADLINE) == 0, sorted(data.glob("desktop-*.log"))[-1].read_text()

    received = desktop.recorded(data)
    assert set(received) == set(desktop.RECIPIENTS)
    assert set(received.values()) == {1}, received
    used, held, limit = customer.quota()
    assert (used, held, limit) == (len(desktop.RECIPIENTS), 0, LIMIT)
    reservations, committed = customer.committed()
    assert committed == len(desktop.RECIPIENTS)
    # At least one kill left quota held on the server that the restart then settled.
    assert max(held_after_kill) > 0, held_after_kill
    reliability.record(
        "desktop killed mid-broadcast and restarted",
        tried=(
            f"the desktop engine process sending a {len(desktop.RECIPIENTS)}-recipient broadcast "
            f"(batches of {desktop.BATCH}) to a 2-worker server on PostgreSQL, kill -9'd "
            f"{len(KILL_AT)} times inside open batches (after {', '.join(map(str, KILL_AT))} sent; "
            f"held on the server after each kill: {', '.join(map(str, held_after_kill))}) and "
            "restarted until it finished"
        ),
        checked=(
            f"every recipient received exactly 1 message (the simulated Telegram's on-disk "
            f"record: {sum(received.values())} messages); server used = {used} over "
            f"{reservations} committed reservations, held = 0; used + held ≤ limit ({limit}) "
            "after every kill"
        ),
        lost="nothing",
    )
