"""A desktop killed (SIGKILL) in the middle of a batch: the next start settles exactly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

from app.broadcast_store import BroadcastState
from tests.helpers.broadcast import RECIPIENTS, Recorder, run, start
from tests.helpers.desktop import Desktop, quota_used

CHILD = Path(__file__).with_name("broadcast_child.py")
REPO = Path(__file__).resolve().parents[2]


def test_a_crash_mid_batch_is_settled_exactly_at_the_next_start(desktop: Desktop) -> None:
    _account_id, broadcast_id = start(desktop)
    desktop.close_core()  # one process at a time uses the journal

    params = {
        "url": desktop.backend.url,
        "pins": list(desktop.backend.pins),
        "data_dir": str(desktop.data_dir),
        "fingerprint": desktop.fingerprint,
        "email": desktop.backend.email,
        "password": desktop.backend.password,
        "broadcast_id": broadcast_id,
        "stop_at": 30,
    }
    child = subprocess.Popen(
        [sys.executable, str(CHILD), json.dumps(params)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        assert child.stdout is not None
        lines = []
        for line in child.stdout:
            lines.append(line.strip())
            if line.strip() == "ready":
                break
        assert lines[-1] == "ready", lines
        assert "sent 30" in lines
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(30)
    assert child.returncode == -signal.SIGKILL

    # The killed process held a batch of 50 and had sent 30 of it.
    assert quota_used(desktop.backend) == (0, 50)

    core = desktop.make_core()
    desktop.sign_in()  # signing in settles what the crash left open
    assert quota_used(desktop.backend) == (30, 0)
    progress = desktop.call(lambda: core.broadcast(broadcast_id))
    assert (progress.counts.sent, progress.counts.pending) == (30, 170)

    final = run(desktop, broadcast_id, Recorder())
    assert final.state is BroadcastState.FINISHED
    # This process sent exactly the 170 the other one had not: nobody got the message twice.
    assert Counter(m.recipient for m in desktop.network.sent) == Counter(RECIPIENTS[30:])
    assert quota_used(desktop.backend) == (200, 0)
