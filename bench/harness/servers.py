"""The servers a benchmark measures: ``tgflow-server`` subprocesses (started, waited for,
stopped) and the bare FastAPI baseline (``python -m bench.harness --serve-bare PORT``)."""

from __future__ import annotations

import argparse
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.harness.client import HOST, get_request
from bench.harness.load import Result, measured, run_loop, single_get

REPO = Path(__file__).resolve().parents[2]
SERVER_CLI = Path(sys.executable).with_name("tgflow-server")
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Server:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def stop(self) -> None:
        if self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=STOP_TIMEOUT_S)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def start_server(
    name: str, argv: list[str], port: int, log_dir: Path, env: dict[str, str]
) -> Server:
    log_path = log_dir / f"{name}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO
        )
    return Server(name, port, process, log_path)


def wait_ready(server: Server, path: str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    with httpx.Client(base_url=server.base_url, timeout=2.0, trust_env=False) as client:
        while time.monotonic() < deadline:
            if server.process.poll() is not None:
                raise SystemExit(f"{server.name} exited early:\n{server.log_tail()}")
            try:
                if client.get(path).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
    raise SystemExit(f"{server.name} not ready after {READY_TIMEOUT_S:.0f} s:\n{server.log_tail()}")


def serve_bare(port: int, handler: str) -> None:
    """The baseline server: a FastAPI app with one trivial route and no middleware.

    It is served with the same uvicorn options as ``tgflow-server run`` (one worker, default loop
    and HTTP implementation, warning log level, no access log, no server header).
    """
    import uvicorn
    from fastapi import FastAPI

    app = FastAPI()
    if handler == "async":

        @app.get("/bare")
        async def bare_async() -> dict[str, str]:
            return {"status": "ok"}

    else:
        # A ``def`` route (the thread pool), as the baseline of every figure since #2.
        @app.get("/bare")
        def bare_sync() -> dict[str, str]:
            return {"status": "ok"}

    uvicorn.run(
        app,
        host=HOST,
        port=port,
        workers=1,
        log_level="warning",
        access_log=False,
        server_header=False,
    )


def start_bare(work: Path, env: dict[str, str], handler: str, servers: list[Server]) -> Server:
    """Start the baseline server (appended to ``servers`` once started) and wait for it."""
    port = free_port()
    argv = [sys.executable, "-m", "bench.harness", "--serve-bare", str(port), "--handler", handler]
    bare = start_server("bare", argv, port, work, env)
    servers.append(bare)
    wait_ready(bare, "/bare")
    return bare


def measure_bare(work: Path, env: dict[str, str], args: argparse.Namespace) -> Result:
    """Start the sync baseline, drive ``GET /bare`` with the run's load options, stop it."""
    servers: list[Server] = []
    try:
        bare = start_bare(work, env, "sync", servers)
        return run_loop(
            measured(
                "GET /bare (baseline, sync)",
                [bare.port],
                single_get(get_request("/bare", bare.port)),
                args,
                [bare.process.pid],
                shown="GET /bare",
            )
        )
    finally:
        for server in servers:
            server.stop()


def start_real(
    work: Path,
    data_dir: Path,
    env: dict[str, str],
    servers: list[Server],
    *,
    workers: int = 1,
    name: str = "tgflow-server",
) -> Server:
    """Start ``tgflow-server run`` (appended to ``servers`` once started) and wait for it."""
    port = free_port()
    argv = [str(SERVER_CLI), "run", "--host", HOST, "--port", str(port)]
    real = start_server(
        name,
        [*argv, "--workers", str(workers), "--data-dir", str(data_dir)],
        port,
        work,
        env,
    )
    servers.append(real)
    wait_ready(real, "/healthz")
    return real


def start_servers(
    work: Path, data_dir: Path, env: dict[str, str], bare_handler: str, servers: list[Server]
) -> tuple[Server, Server]:
    """Start the baseline and the real server; each is appended to ``servers`` once started."""
    return start_bare(work, env, bare_handler, servers), start_real(work, data_dir, env, servers)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve the bare FastAPI baseline.")
    parser.add_argument("--serve-bare", type=int, metavar="PORT", required=True)
    parser.add_argument("--handler", choices=["sync", "async"], default="sync")
    args = parser.parse_args(argv)
    serve_bare(args.serve_bare, args.handler)
    return 0
