"""The desktop's engine as an OS process of its own, to be killed mid-broadcast and restarted.

``python -m tests.helpers.reliability_desktop DATA_DIR API_URL EMAIL PIN...`` (the password in
``TGFLOW_RELIABILITY_PASSWORD``, not on a command line anyone may read) runs the
desktop's :class:`app.core.Core` (no window: the engine the GUI drives) against a real backend: it
signs in (which settles what a killed run left open), adds the simulated account the first time,
creates the broadcast the first time, sends its pending recipients and exits 0 once it finished.

The simulated Telegram keeps what it accepted in ``DATA_DIR/telegram.jsonl`` (one line per message,
on disk before the sender learns of it), so the record survives the ``kill -9`` of the process
that wrote it: it is what the recipients really received.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tests.helpers.server_process import REPO_ROOT

if TYPE_CHECKING:
    from tests.helpers.reliability_network import Customer

#: The broadcast's recipients and text; a small batch so that a kill lands inside an open one.
RECIPIENTS = tuple(f"@reliability_user{i:03d}" for i in range(30))
TEXT = "reliability: one message each"
BATCH = 8
PHONE = "+15550000001"
FINGERPRINT = "v1.reliability-desktop-000000000"
RECORD = "telegram.jsonl"
CORE_DIR = "core"
PASSWORD_ENV = "TGFLOW_RELIABILITY_PASSWORD"


def recorded(data_dir: Path) -> Counter[str]:
    """How many messages each recipient received, per the simulated Telegram's record."""
    path = data_dir / RECORD
    if not path.exists():
        return Counter()
    lines = path.read_text(encoding="utf-8").splitlines()
    return Counter(json.loads(line)["recipient"] for line in lines if line)


def sent_in_store(data_dir: Path) -> int:
    """Recipients the desktop's broadcast store marks sent (read-only, beside the writer)."""
    path = data_dir / CORE_DIR / "broadcasts.sqlite"
    if not path.exists():
        return 0
    uri = f"file:{path}?mode=ro"
    try:
        with sqlite3.connect(uri, uri=True, timeout=5) as db:
            (count,) = db.execute("SELECT count(*) FROM recipients WHERE state = 'sent'").fetchone()
    except sqlite3.OperationalError:  # the schema is not there yet
        return 0
    return int(count)


def start(data_dir: Path, customer: Customer) -> subprocess.Popen[bytes]:
    """Start the desktop process as ``customer``; its output goes to ``data_dir/desktop-N.log``."""
    server = customer.server
    data_dir.mkdir(parents=True, exist_ok=True)
    runs = len(list(data_dir.glob("desktop-*.log")))
    log = (data_dir / f"desktop-{runs}.log").open("wb")
    command = [sys.executable, "-m", __name__, str(data_dir), server.url, customer.email]
    command += server.pins
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), PASSWORD_ENV: customer.password}
    with log:
        return subprocess.Popen(
            command, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )


# --- the desktop process ----------------------------------------------------------------------


def _network(data_dir: Path) -> Any:
    from app.clock import SystemAsyncClock
    from app.transports.simulated import SimulatedNetwork

    record = data_dir / RECORD

    class RecordedNetwork(SimulatedNetwork):
        """The simulated Telegram, its deliveries appended to a file (fsync'd) as they happen."""

        async def send(self, account_id: str, recipient: str, text: str) -> None:
            await super().send(account_id, recipient, text)
            line = json.dumps({"account": account_id, "recipient": recipient}) + "\n"
            with record.open("a", encoding="utf-8") as out:
                out.write(line)
                out.flush()
                os.fsync(out.fileno())

    return RecordedNetwork(seed=os.getpid(), clock=SystemAsyncClock(), latency=(0.02, 0.05))


async def _run(data_dir: Path, url: str, email: str, password: str, pins: tuple[str, ...]) -> int:
    import keyring.backends.fail

    from agent.secrets import RefreshTokenStore
    from app.core import Core, CoreConfig
    from app.core_config import Pacing
    from app.selftest import QuietObserver
    from app.transports.simulated import LOGIN_CODE, SimulatedTransportFactory

    core_dir = data_dir / CORE_DIR
    core = Core(
        CoreConfig(
            api_base_url=url,
            pins=pins,
            # A pause between messages much longer than a send: where a kill usually lands.
            pacing=Pacing(min_delay_sec=0.15, max_delay_sec=0.25, batch_size=BATCH),
        ),
        data_dir=core_dir,
        transports=SimulatedTransportFactory(_network(data_dir)),
        fingerprint=FINGERPRINT,
        secrets=RefreshTokenStore(core_dir, backend=keyring.backends.fail.Keyring()),
    )
    try:
        await core.sign_in(email, password)
        if not core.accounts():
            await core.add_account_start(PHONE)
            await core.add_account_code(LOGIN_CODE)
        broadcasts = core.broadcasts()
        if broadcasts:
            broadcast_id = broadcasts[0].id
        else:
            account = core.accounts()[0].info.account_id
            broadcast_id = core.create_broadcast(account, TEXT, list(RECIPIENTS))
        print(f"run {broadcast_id}: {core.broadcast(broadcast_id).counts}", flush=True)
        final = await core.run_broadcast(broadcast_id, QuietObserver())
        print(f"ended {final.state}: {final.counts} {final.detail}", flush=True)
        return 0 if final.counts.pending == 0 else 1
    finally:
        await core.close()


def main(argv: list[str]) -> int:
    data_dir, url, email, *pins = argv
    password = os.environ[PASSWORD_ENV]
    return asyncio.run(_run(Path(data_dir), url, email, password, tuple(pins)))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
