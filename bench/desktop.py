"""Desktop benchmark: window start-up, GUI stalls while broadcasting, peak memory.

1. Time from process start to the main window shown (``tgflow --config ...`` against a reference
   backend already running), median of ``--starts`` runs, printed beside a bare PyQt6 window
   (a ``QMainWindow`` with a label) started and timed the same way in the same run.
   Targets: the real window <= 0.8 s and <= 5x the bare one.
2. The longest GUI event-loop stall while the real main window broadcasts ``--messages``
   simulated messages (default 10,000) through the Broadcast panel's view-model, with the
   per-recipient table live. A 5 ms QTimer ticks on the GUI thread; a stall is the longest gap
   between two ticks minus the interval. Target: <= 50 ms.
3. Peak RSS of the desktop process during (2) (the backend runs in its own process).
   Target: <= 200 MB.

Both run off screen (``QT_QPA_PLATFORM=offscreen``); the simulated transport has no latency and
the pacing is 0, so the GUI sees the densest stream of updates the engine can produce. The start-up
processes run with compiled bytecode, as an installed program does (a cache in the temporary
directory, written by an unmeasured first start, whatever ``PYTHONDONTWRITEBYTECODE`` says).

Usage: ``.venv/bin/python -m bench.desktop [--starts 7] [--messages 10000]``
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bench.harness import REPO, BenchRun, collect, print_targets, record_value

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

TARGET_START_S = 0.8
TARGET_START_RATIO = 5.0
TARGET_STALL_MS = 50.0
TARGET_RSS_MB = 200.0
TICK_MS = 5

BARE_WINDOW = """
import sys
from PyQt6.QtCore import QTimer
from PyQt6.QtWidgets import QApplication, QLabel, QMainWindow
app = QApplication(sys.argv[:1])
window = QMainWindow()
window.setCentralWidget(QLabel("bare"))
window.show()
def shown():
    print("tgflow: window shown", flush=True)
    app.quit()
QTimer.singleShot(0, shown)
app.exec()
"""

BACKEND = """
import json, sys
from pathlib import Path
from app.demo import start_demo_backend
backend = start_demo_backend(Path(sys.argv[1]), monthly_quota=int(sys.argv[2]),
                             max_devices=10, rate_limit_enabled=False)
print(json.dumps({"url": backend.url, "pins": list(backend.pins), "email": backend.email,
                  "password": backend.password}), flush=True)
sys.stdin.read()
backend.stop()
"""


@dataclass(frozen=True)
class Backend:
    """The reference backend :func:`start_backend` started (the JSON line ``BACKEND`` prints)."""

    url: str
    pins: tuple[str, ...]
    email: str
    password: str

    @classmethod
    def from_json(cls, line: str) -> Backend:
        data = json.loads(line)
        return cls(
            url=str(data["url"]),
            pins=tuple(str(pin) for pin in data["pins"]),
            email=str(data["email"]),
            password=str(data["password"]),
        )


def start_backend(data_dir: Path, quota: int) -> tuple[subprocess.Popen[str], Backend]:
    proc = subprocess.Popen(
        [sys.executable, "-c", BACKEND, str(data_dir), str(quota)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        raise SystemExit("the reference backend did not start")
    return proc, Backend.from_json(line)


def time_to_shown(argv: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, cwd=REPO, env=env)
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.strip() == "tgflow: window shown":
            elapsed = time.perf_counter() - started
            break
    else:
        raise SystemExit(f"{argv[:3]} ended without showing a window (exit {proc.wait()})")
    proc.wait(60)
    return elapsed


def bench_start(backend: Backend, root: Path, runs: int) -> tuple[float, float]:
    settings = root / "settings.ini"
    settings.write_text(
        "[license]\n"
        f"api_base_url = {backend.url}\n"
        f"jwt_public_key_fingerprint = {','.join(backend.pins)}\n",
        encoding="utf-8",
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "TGFLOW_BENCH_EXIT_WHEN_SHOWN": "1"}
    # As an installed program runs: with compiled bytecode (kept out of the repository).
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(root / "pycache")
    real_argv = [
        sys.executable,
        "-m",
        "app.main",
        "--config",
        str(settings),
        "--data-root",
        str(root / "desktop"),
    ]
    bare_argv = [sys.executable, "-c", BARE_WINDOW]
    # First runs: the data dirs, the journal and the bytecode cache are created.
    time_to_shown(real_argv, env)
    time_to_shown(bare_argv, env)
    bare: list[float] = []
    real: list[float] = []
    for _ in range(runs):  # interleaved, so both see the same machine
        bare.append(time_to_shown(bare_argv, env))
        real.append(time_to_shown(real_argv, env))
    return statistics.median(bare), statistics.median(real)


def bench_broadcast(backend: Backend, root: Path, messages: int) -> tuple[float, float, float]:
    """Broadcast ``messages`` through the real window.

    Returns (longest stall ms, 99th-percentile tick gap ms, peak RSS MB).
    """
    import keyring.backends.fail
    from PyQt6.QtCore import QEventLoop, QTimer
    from PyQt6.QtWidgets import QApplication

    from agent.secrets import RefreshTokenStore
    from app.broadcast import Pacing
    from app.clock import FakeAsyncClock
    from app.config import Settings
    from app.core import Core, CoreConfig
    from app.engine import Engine
    from app.i18n import Translator
    from app.transports.simulated import SimulatedNetwork, SimulatedTransportFactory
    from app.ui.main_window import MainWindow

    app = QApplication.instance() or QApplication(sys.argv[:1])
    engine = Engine()
    data_dir = root / "broadcast"
    clock = FakeAsyncClock(datetime.now(UTC))

    async def build() -> Core:
        return Core(
            CoreConfig(
                api_base_url=backend.url,
                pins=backend.pins,
                pacing=Pacing(min_delay_sec=0, max_delay_sec=0, batch_size=50),
            ),
            data_dir=data_dir,
            transports=SimulatedTransportFactory(SimulatedNetwork(seed=1, clock=clock)),
            fingerprint="v1.bench-desktop-device-000000",
            clock=clock,
            secrets=RefreshTokenStore(data_dir, backend=keyring.backends.fail.Keyring()),
        )

    core = engine.submit(build()).result(60)

    async def prepare() -> str:
        await core.sign_in(backend.email, backend.password)
        await core.add_account_start("+15550000001")
        return (await core.add_account_code("12345")).info.account_id

    account_id = engine.submit(prepare()).result(60)
    window = MainWindow(
        engine,
        core,
        settings=Settings(),
        settings_path=root / "settings.ini",
        log_dir=root / "logs",
        translator=Translator("en"),
    )
    window.show()
    gc.collect()
    gc.freeze()  # as app/main.py does once the window is built
    session = window.broadcast
    recipients = "\n".join(f"@bench_user{i:06d}" for i in range(messages))

    loop = QEventLoop()
    session.imported.connect(lambda _r: loop.quit())
    session.import_text(recipients)
    loop.exec()
    session.set_opted_in(True)
    window.tabs.setCurrentWidget(window.broadcast_panel)  # the table is on screen

    gaps: list[float] = []
    last = [time.perf_counter()]

    def tick() -> None:
        now = time.perf_counter()
        gaps.append(now - last[0])
        last[0] = now

    timer = QTimer()
    timer.setInterval(TICK_MS)
    timer.timeout.connect(tick)
    done = QEventLoop()
    finals: list[object] = []

    def ended(outcome: object) -> None:
        finals.append(outcome)
        done.quit()

    session.finished.connect(ended)
    session.failed.connect(ended)
    started = time.perf_counter()
    timer.start()
    last[0] = time.perf_counter()
    if not session.start(account_id, "Benchmark message"):
        raise SystemExit("the broadcast did not start")
    done.exec()
    timer.stop()
    elapsed = time.perf_counter() - started
    final = finals[0]
    sent = getattr(getattr(final, "counts", None), "sent", None)
    print(f"  broadcast ended: {getattr(final, 'state', final)}, {sent} sent in {elapsed:.1f} s")
    if sent != messages:
        raise SystemExit(f"expected {messages} messages sent, got {sent}")
    engine.submit(core.close()).result(60)
    engine.stop()
    window.close()
    del app
    stall_ms = max(0.0, max(gaps) * 1000 - TICK_MS)
    p99_ms = sorted(gaps)[int(len(gaps) * 0.99)] * 1000
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"  {len(gaps)} ticks of {TICK_MS} ms; 99th-percentile gap {p99_ms:.1f} ms")
    return stall_ms, p99_ms, peak_mb


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--starts", type=int, default=7)
    parser.add_argument("--messages", type=int, default=10_000)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="tgflow-bench-desktop-") as tmp:
        root = Path(tmp)
        proc, backend = start_backend(root / "server", quota=args.messages * 2)
        try:
            print(f"Desktop benchmark ({args.starts} starts, {args.messages} messages)")
            bare, real = bench_start(backend, root, args.starts)
            ratio = real / bare
            print(f"  bare PyQt6 window shown:  median {bare:.3f} s")
            print(f"  TGFlow main window shown: median {real:.3f} s  ({ratio:.2f}x bare)")
            stall, _p99, peak = bench_broadcast(backend, root, args.messages)
            print(f"  longest GUI stall while broadcasting: {stall:.1f} ms")
            print(f"  peak RSS of the desktop process: {peak:.0f} MB")
            record_value("bare PyQt6 window shown, median", bare, "s")
            record_value("TGFlow main window shown, median", real, "s", baseline=bare)
            met = print_targets(
                [
                    (f"start <= {TARGET_START_S} s", real <= TARGET_START_S, f"{real:.3f} s"),
                    (
                        f"start <= {TARGET_START_RATIO:.0f}x bare",
                        ratio <= TARGET_START_RATIO,
                        f"{ratio:.2f}x",
                    ),
                    (
                        f"longest GUI stall <= {TARGET_STALL_MS:.0f} ms",
                        stall <= TARGET_STALL_MS,
                        f"{stall:.1f} ms",
                    ),
                    (
                        f"peak RSS <= {TARGET_RSS_MB:.0f} MB",
                        peak <= TARGET_RSS_MB,
                        f"{peak:.0f} MB",
                    ),
                ],
                [],
            )
        finally:
            assert proc.stdin is not None
            proc.stdin.close()
            proc.wait(30)
    return 0 if met else 1


#: A smoke run's arguments (``bench/run.py --quick``).
QUICK = ["--starts", "1", "--messages", "50"]


def run(quick: bool) -> BenchRun:
    """bench/run.py's entry: the full run (the defaults) or a smoke run."""
    return collect(main, QUICK if quick else [])


if __name__ == "__main__":
    sys.exit(main())
