"""The benchmarks' shared plumbing: HTTP client, load driver, processes, CPU-disturbance report.

Every benchmark (``bench/server.py``, ``agent.py``, ``marketplace.py``, ``portal.py``,
``billing.py``, ``points.py``, ``desktop.py``) imports it as ``bench.harness``; run them as modules
from the repository root (``python -m bench.server``), or all at once with ``python -m bench.run``.

- a minimal keep-alive HTTP/1.1 client over asyncio streams (it costs far less CPU than the
  servers it measures) and the request builders;
- the load driver: N connections, each running one operation in a loop for a fixed time, spread
  round-robin over one or several server ports, with latencies, failures, the servers' CPU and
  RSS (a server is its process and all its children: ``--workers`` forks);
- process helpers: free ports, ``tgflow-server`` subprocesses (seeded, started, stopped), the bare
  FastAPI baseline (``python -m bench.harness --serve-bare PORT``), ``/proc`` readings;
- the disturbance report: how much CPU other processes and the hypervisor (steal) took while a
  scenario ran, so that a noisy run is flagged as such.
- the figures for ``bench/run.py``: what a benchmark prints through :func:`print_table`,
  :func:`print_targets` and :func:`record_value` is also recorded as :class:`Figure` objects while
  :func:`collect` runs its ``main``; each module's ``run(quick)`` is that call.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import math
import os
import platform
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, TypeVar

import httpx

HOST = "127.0.0.1"
REPO = Path(__file__).resolve().parent.parent
SERVER_CLI = Path(sys.executable).with_name("tgflow-server")
EMAIL = "bench@example.com"
PLAN = "bench"
FINGERPRINT = "bench-device:0000000000000001"
READY_TIMEOUT_S = 60.0
REQUEST_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0
#: Upper bound on operations per connection and scenario, so that no loop is unbounded even if the
#: clock misbehaves; far above what one connection can do in the configured time.
MAX_OPS_PER_SECOND_PER_CONN = 20_000
#: Above this share of a core lost to other work or to steal, a scenario counts as disturbed.
DISTURBED_OTHER_CPU = 0.15
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"


# --- a minimal keep-alive HTTP/1.1 client --------------------------------------------------------


class HttpError(Exception):
    pass


class Connection:
    """One keep-alive connection; requests on it are strictly sequential."""

    def __init__(self, port: int) -> None:
        self._port = port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self._reader, self._writer = await asyncio.open_connection(HOST, self._port)
        sock = self._writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(OSError):
                await self._writer.wait_closed()
        self._reader = self._writer = None

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        if self._reader is None or self._writer is None:
            await self.open()
        assert self._reader is not None and self._writer is not None
        self._writer.write(raw)
        head = await self._reader.readuntil(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
            raise HttpError(f"bad status line {lines[0]!r}")
        status = int(parts[1])
        length: int | None = None
        chunked = False
        closing = False
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif name == b"connection":
                closing = b"close" in value.lower()
        if chunked:
            body = await self._read_chunked()
        elif length is not None:
            body = await self._reader.readexactly(length)
        else:
            raise HttpError("response without a length")
        if closing:
            await self.close()
        return status, body

    async def _read_chunked(self) -> bytes:
        assert self._reader is not None
        chunks: list[bytes] = []
        while True:
            size = int((await self._reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await self._reader.readuntil(b"\r\n")
                return b"".join(chunks)
            chunks.append(await self._reader.readexactly(size))
            await self._reader.readexactly(2)


def get_request(path: str, port: int, token: str | None = None) -> bytes:
    lines = [f"GET {path} HTTP/1.1", f"Host: {HOST}:{port}", "Accept: application/json"]
    if token is not None:
        lines.append(f"Authorization: Bearer {token}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def post_request(path: str, port: int, token: str, payload: dict[str, object]) -> bytes:
    body = json.dumps(payload, separators=(",", ":")).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nAccept: application/json\r\n"
        f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


# --- the load driver ------------------------------------------------------------------------------

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


def run_loop(coro: Coroutine[None, None, T]) -> T:
    """Run on uvloop when it is installed: it keeps the load generator's own CPU cost low."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


# --- processes ------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def proc_status_kb(pid: int, key: str) -> int | None:
    try:
        text = Path(f"/proc/{pid}/status").read_text(encoding="ascii")
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1])
    return None


def machine_cpu_times() -> tuple[float, float] | None:
    """(busy, steal) CPU seconds of all cores since boot, from ``/proc/stat``.

    ``busy`` is the time this machine ran anything; ``steal`` the time a virtual machine wanted
    to run but the hypervisor ran another guest, which slows everything here down.
    """
    try:
        first = Path("/proc/stat").read_text(encoding="ascii").splitlines()[0]
    except OSError:
        return None
    # user nice system idle iowait irq softirq steal (guest time is already counted in user)
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in first.split()[1:9])
    tick = os.sysconf("SC_CLK_TCK")
    return (user + nice + system + irq + softirq) / tick, steal / tick


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of ``pid`` and its threads, from ``/proc/<pid>/stat``."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (uvicorn's ``--workers`` are children of a supervisor)."""
    found = [pid]
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError, ValueError):
            for child in (task / "children").read_text(encoding="ascii").split():
                found.extend(process_tree(int(child)))
    return found


def processes_cpu_seconds(pids: Sequence[int]) -> float | None:
    """Summed user + system CPU time of ``pids`` (None when one of them cannot be read)."""
    total = 0.0
    for pid in pids:
        used = process_cpu_seconds(pid)
        if used is None:
            return None
        total += used
    return total


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


def run_cli(args: list[str], env: dict[str, str]) -> str:
    """``tgflow-server ARGS`` with ``env`` as its environment; its output. Run in this process:
    a subprocess imports the server again each time (seconds on a busy machine, several times
    per benchmark), and the seeding it does is not what is measured."""
    from server_stub import cli

    saved = dict(os.environ)
    out, err = io.StringIO(), io.StringIO()
    try:
        os.environ.clear()
        os.environ.update(env)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                status = cli.main(args)
            except SystemExit as exc:  # argparse's refusals
                status = exc.code if isinstance(exc.code, int) else 1
    finally:
        os.environ.clear()
        os.environ.update(saved)
    if status:
        raise SystemExit(f"tgflow-server {' '.join(args[:3])} failed:\n{err.getvalue()}")
    return out.getvalue()


def login(server: Server, password: str) -> str:
    with httpx.Client(base_url=server.base_url, timeout=30.0, trust_env=False) as client:
        response = client.post(
            "/auth/login",
            json={"email": EMAIL, "password": password, "device_fingerprint": FINGERPRINT},
        )
    if response.status_code != 200:
        raise SystemExit(f"login failed: {response.status_code} {response.text}")
    token: str = response.json()["token"]
    return token


def seed(data_dir: Path, password: str, env: dict[str, str]) -> None:
    common = ["--data-dir", str(data_dir)]
    run_cli(
        ["plans", "create", "--name", PLAN, "--quota", "100000000", "--max-devices", "50", *common],
        env,
    )
    # The password goes through the environment (which the CLI reads), not the process list.
    run_cli(
        ["users", "create", EMAIL, "--plan", PLAN, *common],
        {**env, "TGFLOW_NEW_USER_PASSWORD": password},
    )


def prepare_run(title: str, prefix: str) -> tuple[Path, Path, dict[str, str], str]:
    """Print the run's header; return a fresh work dir, its data dir, the env and a password."""
    load = os.getloadavg()
    print(
        f"TGFlow {title} benchmark: {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    work = Path(tempfile.mkdtemp(prefix=prefix))
    data_dir = work / "data"
    # Inherited TGFLOW_* settings (a PostgreSQL URL, a log level) would change what is measured.
    env = {k: v for k, v in os.environ.items() if not k.startswith("TGFLOW_")}
    env |= {"TGFLOW_RATE_LIMIT_ENABLED": "false", "TGFLOW_DATA_DIR": str(data_dir)}
    return work, data_dir, env, secrets.token_hex(16)


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
        print(f"  GET /bare: {args.warmup:g} s warm-up, {args.seconds:g} s measured ...")
        return run_loop(
            run_scenario(
                "GET /bare (baseline, sync)",
                "req",
                [bare.port],
                single_get(get_request("/bare", bare.port)),
                connections=args.connections,
                warmup=args.warmup,
                seconds=args.seconds,
                server_pids=[bare.process.pid],
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


@contextlib.contextmanager
def postgres_database(admin_url: str) -> Iterator[str]:
    """A throwaway database on the PostgreSQL server of ``admin_url``, dropped afterwards."""
    import psycopg

    name = "tgflow_bench_" + secrets.token_hex(6)
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield admin_url.rsplit("/", 1)[0] + "/" + name
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --- figures for bench/run.py ---------------------------------------------------------------------


@dataclass(frozen=True)
class Figure:
    """One line of a benchmark's report (bench/run.py writes them into docs/BENCHMARKS.md): a
    figure as printed, the number and unit behind it, the baseline measured in the same run, and
    the target it is held to with its verdict (``met`` ``None``: a figure without a target)."""

    name: str
    shown: str
    value: float | None = None
    unit: str = ""
    baseline: float | None = None
    target: str | None = None
    met: bool | None = None

    @property
    def ratio(self) -> float | None:
        if self.value is None or not self.baseline:
            return None
        return self.value / self.baseline


@dataclass
class BenchRun:
    """What one benchmark's ``run(quick)`` returns: its figures and how it was run."""

    argv: list[str]
    figures: list[Figure]
    seconds: float
    #: The benchmark's exit status (1: a target not met or a request failed).
    status: int


#: The load options of a smoke run (``bench/run.py --quick``): it proves the plumbing, the
#: figures it gives mean nothing.
QUICK_LOAD: Final = ("--seconds", "0.3", "--warmup", "0", "--connections", "2", "--no-postgres")

#: The figures recorded since :func:`collect` started (``None``: nobody collects them).
_recorded: list[Figure] | None = None


def record(figure: Figure) -> None:
    if _recorded is not None:
        _recorded.append(figure)


def collect(main: Callable[[list[str]], int], argv: Sequence[str]) -> BenchRun:
    """Run a benchmark's ``main(argv)`` and keep every figure and target it reports."""
    global _recorded
    _recorded = []
    started = time.monotonic()
    try:
        status = main(list(argv))
        return BenchRun(list(argv), _recorded, time.monotonic() - started, status)
    finally:
        _recorded = None


def record_results(results: Sequence[Result], baseline: Result | None) -> None:
    """The load scenarios' throughput, each against the baseline of the same run."""
    for r in results:
        if r is baseline:
            continue
        record(
            Figure(
                r.name,
                f"{r.rate:,.0f} {r.unit}/s, p50 {r.p(50):.2f} ms, p95 {r.p(95):.2f} ms",
                value=r.rate,
                unit=f"{r.unit}/s",
                baseline=baseline.rate if baseline is not None else None,
            )
        )


def record_value(name: str, value: float, unit: str, baseline: float | None = None) -> None:
    """A figure without a target of its own (the targets are :func:`print_targets`')."""
    record(Figure(name, f"{value:,.2f} {unit}", value=value, unit=unit, baseline=baseline))


# --- report ---------------------------------------------------------------------------------------


def kib_to_mb(kib: int | None) -> str:
    return f"{kib / 1024:.1f} MB" if kib is not None else "? MB"


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def cpu_share(seconds: float | None, window: float) -> str:
    return f"{seconds / window:.0%}" if seconds is not None else "?"


def cpu_ms_per_request(r: Result) -> float:
    """Server CPU milliseconds per request answered (a pair counts as its two requests)."""
    requests = len(r.sample.request_latencies)
    if r.server_cpu_s is None or not requests:
        return float("nan")
    return r.server_cpu_s / requests * 1000


def print_table(results: dict[str, Result], width: int) -> None:
    """One row per scenario (names padded to ``width``), then the disturbance report."""
    print()
    print(
        f"{'scenario':{width}} {'rate':>12} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'ok':>7} "
        f"{'failed':>6} {'CPU/req ms':>10} {'server CPU':>10} {'other CPU':>9} {'steal':>6}"
    )
    record_results(list(results.values()), results.get("bare"))
    for r in results.values():
        print(
            f"{r.name:{width}} {f'{r.rate:,.0f} {r.unit}/s':>12} {r.p(50):8.2f} {r.p(95):8.2f} "
            f"{r.p(99):8.2f} {r.sample.ok:7d} {r.sample.failed:6d} {cpu_ms_per_request(r):10.3f} "
            f"{cpu_share(r.server_cpu_s, r.seconds):>10} {cpu_share(r.other_cpu_s, r.seconds):>9} "
            f"{cpu_share(r.steal_s, r.seconds):>6}"
        )
        if r.sample.errors:
            print(f"{'':{width}} errors: {r.sample.errors}")
    print_disturbance(list(results.values()))


def print_disturbance(results: Sequence[Result]) -> None:
    """Explain the CPU columns and warn when other work or steal disturbed a scenario."""
    print(
        "CPU columns: share of one core (100% = one core busy for the whole window). 'other' is\n"
        "everything else on this machine; 'steal' is time the hypervisor gave to other guests."
    )
    busiest = max(r.disturbance for r in results)
    if busiest > DISTURBED_OTHER_CPU:
        print(
            f"WARNING: other work or steal took up to {busiest:.0%} of a core during a scenario; "
            "the figures are disturbed, run again on a quiet machine."
        )


def add_load_options(parser: argparse.ArgumentParser, seconds: float, warmup: float) -> None:
    """The options every load benchmark takes: timing, connections, PostgreSQL, kept data."""
    parser.add_argument(
        "--seconds", type=float, default=seconds, help="measured seconds per scenario"
    )
    parser.add_argument("--warmup", type=float, default=warmup, help="warm-up seconds per scenario")
    parser.add_argument("--connections", type=int, default=32, help="concurrent connections")
    parser.add_argument(
        "--postgres",
        default=DEFAULT_POSTGRES,
        help="PostgreSQL server (admin URL) on which a throwaway database is made",
    )
    parser.add_argument("--no-postgres", action="store_true", help="SQLite scenarios only")
    parser.add_argument(
        "--keep-data", action="store_true", help="keep the temporary data dir and server logs"
    )


def load_options_valid(args: argparse.Namespace) -> bool:
    return args.seconds > 0 and args.warmup >= 0 and 2 <= args.connections <= 1024


LOAD_OPTIONS_RULE = "--seconds > 0, --warmup >= 0, 2 <= --connections <= 1024"


def print_targets(checks: Sequence[tuple[str, bool, str]], failures: Sequence[str]) -> bool:
    """Print each target as met or not with its figure, and where requests failed; True when
    every target is met and nothing failed."""
    print()
    print("targets:")
    for label, ok, figure in checks:
        print(f"  {label}: {verdict(ok)} ({figure})")
        record(Figure(label, figure, target=label, met=ok))
    if failures:
        print(f"  requests failed in {', '.join(failures)}: those figures are not trustworthy")
    shown = f"failed in {', '.join(failures)}" if failures else "none failed"
    record(Figure("every request answered", shown, target="no request fails", met=not failures))
    return all(ok for _, ok, _ in checks) and not failures


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve the bare FastAPI baseline.")
    parser.add_argument("--serve-bare", type=int, metavar="PORT", required=True)
    parser.add_argument("--handler", choices=["sync", "async"], default="sync")
    args = parser.parse_args(argv)
    serve_bare(args.serve_bare, args.handler)
    return 0


if __name__ == "__main__":
    sys.exit(main())
