"""A desktop process that is killed mid-broadcast (see test_crash.py).

argv[1] is a JSON object: url, pins, data_dir, fingerprint, email, password, broadcast_id,
stop_at. The process prints ``sent N`` after each message recorded and, at ``stop_at``, prints
``ready`` and blocks until it is killed: the reservation of the batch stays open.
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path

import keyring.backends.fail

from agent.secrets import RefreshTokenStore
from app.broadcast import Pacing, Progress
from app.broadcast_store import RecipientState
from app.clock import FakeAsyncClock
from app.core import Core, CoreConfig
from app.transports.simulated import SimulatedNetwork, SimulatedTransportFactory


class Observer:
    def __init__(self, stop_at: int) -> None:
        self.sent = 0
        self.stop_at = stop_at

    def progress(self, progress: Progress) -> None:
        return None

    def recipient(
        self, broadcast_id: str, recipient: str, state: RecipientState, detail: str
    ) -> None:
        if state is RecipientState.SENT:
            self.sent += 1
            print(f"sent {self.sent}", flush=True)
            if self.sent == self.stop_at:
                print("ready", flush=True)
                threading.Event().wait()  # the "crash": frozen here until SIGKILL

    def notice(self, broadcast_id: str, kind: str, message: str) -> None:
        return None


async def main(params: dict[str, object]) -> None:
    clock = FakeAsyncClock(datetime.now(UTC))
    data_dir = Path(str(params["data_dir"]))
    core = Core(
        CoreConfig(
            api_base_url=str(params["url"]),
            pins=tuple(params["pins"]),  # type: ignore[arg-type]
            pacing=Pacing(min_delay_sec=1, max_delay_sec=1, batch_size=50),
        ),
        data_dir=data_dir,
        transports=SimulatedTransportFactory(SimulatedNetwork(seed=1, clock=clock)),
        fingerprint=str(params["fingerprint"]),
        clock=clock,
        secrets=RefreshTokenStore(data_dir, backend=keyring.backends.fail.Keyring()),
    )
    await core.sign_in(str(params["email"]), str(params["password"]))
    await core.run_broadcast(str(params["broadcast_id"]), Observer(int(str(params["stop_at"]))))
    print("finished without being killed", flush=True)


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1])))
