"""A reference backend in processes of its own: ``python -m server_stub run`` on a free port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def server_command(
    args: list[str],
    url: str,
    data_dir: Path,
    log: Path,
    env: Mapping[str, str] | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """``python -m server_stub <args> --data-dir <data_dir>`` on ``url``'s database in a
    session of its own, its output in ``log``; stopped (and its children with it) however the
    test ends."""
    environment = {
        **os.environ,
        "TGFLOW_DATABASE_URL": url,
        "TGFLOW_RATE_LIMIT_ENABLED": "false",
        "TGFLOW_LOG_LEVEL": "WARNING",
        **(env or {}),
    }
    environment.pop("TGFLOW_DATA_DIR", None)
    command = [sys.executable, "-m", "server_stub", *args, "--data-dir", str(data_dir)]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            command,
            env=environment,
            cwd=REPO_ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield proc
    finally:
        _stop(proc)


@contextmanager
def server_process(
    url: str,
    data_dir: Path,
    log: Path,
    *,
    workers: int = 2,
    env: Mapping[str, str] | None = None,
    ready_timeout: float = 90,
) -> Iterator[tuple[str, int]]:
    """Serve ``url``'s database on a free port; yields the base URL and the supervisor's pid.

    Ready when ``/healthz`` answers 200, polled until a bounded deadline (a loaded machine may
    take many seconds to start Python); stopped however the test ends.
    """
    port = free_port()
    args = ["run", "--workers", str(workers), "--host", "127.0.0.1", "--port", str(port)]
    with server_command(args, url, data_dir, log, env) as proc:
        base = f"http://127.0.0.1:{port}"
        _wait_ready(proc, base, log, ready_timeout)
        yield base, proc.pid


def worker_pids(supervisor: int) -> list[int]:
    """The server's live worker processes: children of the uvicorn supervisor (Linux /proc; a
    killed worker not yet reaped has no command line and is left out)."""
    children = Path(f"/proc/{supervisor}/task/{supervisor}/children").read_text().split()
    workers = []
    for child in children:
        with suppress(FileNotFoundError):
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ")
            if b"multiprocessing" in cmdline and b"resource_tracker" not in cmdline:
                workers.append(int(child))
    return workers


def _wait_ready(proc: subprocess.Popen[bytes], base: str, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        assert proc.poll() is None, f"the server exited early:\n{log.read_text()}"
        try:
            if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, f"the server never became ready:\n{log.read_text()}"
        time.sleep(0.1)  # readiness poll of an external process, not test synchronisation


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()  # uvicorn's supervisor stops its workers on SIGTERM
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    # Our own session (start_new_session): sweep up a worker the supervisor left behind.
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
