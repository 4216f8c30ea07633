"""Throughput, latency and CPU cost of the reference backend against a bare FastAPI baseline.

One run, one load generator (this process, ``bench.harness``), the same concurrency throughout:

1. ``GET /bare`` on a FastAPI app with no middleware, served by uvicorn like the real server;
2. SQLite, one worker: ``GET /license`` with a bearer token, then ``POST /usage/reserve`` +
   ``POST /usage/commit`` counted as pairs;
3. PostgreSQL (a throwaway database on ``--postgres``), one worker: the same two scenarios; then
   two server processes on two ports sharing that database, with the connections spread evenly
   over them (connection i goes to port i mod 2), to compare 2 workers with 1.

Every server is a subprocess on loopback with rate limits off (they would throttle the load).
Per scenario the report gives the rate, latency percentiles, the servers' CPU per request (server
CPU seconds / requests answered; a pair is two requests) and the CPU other processes and the
hypervisor took (a disturbed run is flagged); then the servers' RSS and every target, "met" or
"NOT met". The exit status is 1 when a target is not met or a request failed.

Usage, from the repository root::

    .venv/bin/python -m bench.server [--seconds 10] [--warmup 3] [--connections 32]
        [--postgres postgresql://postgres@127.0.0.1:5432/test | --no-postgres]
"""

from __future__ import annotations

import argparse
import json
import secrets
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from bench.harness import (
    LOAD_OPTIONS_RULE,
    QUICK_LOAD,
    SERVER_CLI,
    BenchRun,
    Connection,
    Operation,
    Result,
    Server,
    add_load_options,
    collect,
    cpu_ms_per_request,
    get_request,
    kib_to_mb,
    load_options_valid,
    login,
    measured,
    post_request,
    postgres_database,
    prepare_run,
    print_table,
    print_targets,
    proc_status_kb,
    process_tree,
    run_loop,
    seed,
    single_get,
    start_bare,
    start_real,
)

LICENSE_MIN_RATIO = 0.5
LICENSE_MAX_P95_MS = 25.0
PAIR_MIN_RATIO = 0.25
PAIR_MAX_P95_MS = 60.0
PG_LICENSE_MIN_RATIO = 0.4
PG_LICENSE_MAX_P95_MS = 40.0
LICENSE_MAX_CPU_MS = 0.75
PAIR_MAX_CPU_MS = 2.5
SCENARIO_WIDTH = 34
RSS_MAX_MB = 150.0

#: (key, label, unit, servers, operation) of one scenario.
Scenario = tuple[str, str, str, Sequence[Server], Operation]


def reserve_commit(port: int, token: str) -> Operation:
    prefix = f"bench-{secrets.token_hex(4)}-"
    counter = iter(range(1 << 62))

    async def op(conn: Connection, request_latencies: list[float]) -> bool:
        correlation_id = f"{prefix}{next(counter)}"
        start = time.perf_counter()
        status, body = await conn.request(
            post_request(
                "/usage/reserve", port, token, {"messages": 1, "correlation_id": correlation_id}
            )
        )
        reserved = time.perf_counter()
        request_latencies.append(reserved - start)
        if status != 201:
            return False
        reservation_id = json.loads(body)["reservation_id"]
        status, _ = await conn.request(
            post_request(
                "/usage/commit", port, token, {"reservation_id": reservation_id, "used": 1}
            )
        )
        request_latencies.append(time.perf_counter() - reserved)
        return status == 200

    return op


def real_scenarios(key: str, label: str, servers: Sequence[Server], token: str) -> list[Scenario]:
    port = servers[0].port
    license_op = single_get(get_request("/license", port, token))
    return [
        (f"{key} license", f"GET /license ({label})", "req", servers, license_op),
        (
            f"{key} pair",
            f"reserve + commit ({label})",
            "pair",
            servers,
            reserve_commit(port, token),
        ),
    ]


async def measure(scenarios: Sequence[Scenario], args: argparse.Namespace) -> dict[str, Result]:
    results = {}
    for key, label, unit, servers, op in scenarios:
        results[key] = await measured(
            label,
            [s.port for s in servers],
            op,
            args,
            [s.process.pid for s in servers],
            unit=unit,
        )
    return results


def rss_kb(server: Server) -> int | None:
    """The largest VmRSS among the server's processes."""
    known = [proc_status_kb(pid, "VmRSS") for pid in process_tree(server.process.pid)]
    values = [v for v in known if v is not None]
    return max(values) if values else None


# --- report ---------------------------------------------------------------------------------------


def print_report(results: dict[str, Result], rss: dict[str, int | None]) -> bool:
    print_table(results, SCENARIO_WIDTH)
    base = results["bare"].rate

    def ratio(key: str) -> float:
        return results[key].rate / base if base else 0.0

    checks: list[tuple[str, bool, str]] = []
    lic, pair = results["sqlite license"], results["sqlite pair"]
    checks.append(
        (
            f"SQLite /license >= {LICENSE_MIN_RATIO}x bare and p95 <= {LICENSE_MAX_P95_MS:g} ms",
            ratio("sqlite license") >= LICENSE_MIN_RATIO and lic.p(95) <= LICENSE_MAX_P95_MS,
            f"{ratio('sqlite license'):.2f}x, p95 {lic.p(95):.2f} ms",
        )
    )
    checks.append(
        (
            f"SQLite reserve+commit >= {PAIR_MIN_RATIO}x bare (pairs/s), p95 <= "
            f"{PAIR_MAX_P95_MS:g} ms",
            ratio("sqlite pair") >= PAIR_MIN_RATIO and pair.p(95) <= PAIR_MAX_P95_MS,
            f"{ratio('sqlite pair'):.2f}x, p95 {pair.p(95):.2f} ms",
        )
    )
    for db in ("sqlite", "pg1"):
        if f"{db} license" not in results:
            continue
        lic_cpu, pair_cpu = (cpu_ms_per_request(results[f"{db} {k}"]) for k in ("license", "pair"))
        checks.append(
            (
                f"{db} CPU per /license <= {LICENSE_MAX_CPU_MS} ms",
                lic_cpu <= LICENSE_MAX_CPU_MS,
                f"{lic_cpu:.3f} ms",
            )
        )
        checks.append(
            (
                f"{db} CPU per pair <= {PAIR_MAX_CPU_MS} ms",
                2 * pair_cpu <= PAIR_MAX_CPU_MS,
                f"{2 * pair_cpu:.3f} ms",
            )
        )
    if "pg1 license" in results:
        pg = results["pg1 license"]
        checks.append(
            (
                f"PostgreSQL /license >= {PG_LICENSE_MIN_RATIO}x bare and p95 <= "
                f"{PG_LICENSE_MAX_P95_MS:g} ms (one worker)",
                ratio("pg1 license") >= PG_LICENSE_MIN_RATIO and pg.p(95) <= PG_LICENSE_MAX_P95_MS,
                f"{ratio('pg1 license'):.2f}x, p95 {pg.p(95):.2f} ms",
            )
        )
    for name, kib in rss.items():
        mb = kib / 1024 if kib is not None else float("nan")
        checks.append(
            (f"RSS of {name} after the run <= {RSS_MAX_MB:g} MB", mb <= RSS_MAX_MB, kib_to_mb(kib))
        )

    print()
    for key in results:
        if key != "bare":
            print(f"{results[key].name + ' / bare':48} {ratio(key):.2f}x")
    for kind in ("license", "pair"):
        one, two = results.get(f"pg1 {kind}"), results.get(f"pg2 {kind}")
        if one and two and one.rate:
            print(f"PostgreSQL 2 workers / 1 worker, {kind:7}          {two.rate / one.rate:.2f}x")
    return print_targets(checks, [r.name for r in results.values() if r.sample.failed])


# --- main -----------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark the TGFlow reference backend against a bare FastAPI endpoint.",
    )
    add_load_options(parser, seconds=10.0, warmup=3.0)
    parser.add_argument(
        "--bare-handler",
        choices=["sync", "async"],
        default="sync",
        help="baseline route as 'def' (thread pool) or 'async def' (default: sync, as in #2)",
    )
    args = parser.parse_args(argv)
    if not load_options_valid(args):
        parser.error(f"need {LOAD_OPTIONS_RULE}")
    return args


def run_sqlite(
    args: argparse.Namespace, work: Path, password: str, env: dict[str, str]
) -> tuple[dict[str, Result], dict[str, int | None]]:
    data_dir = work / "data"
    seed(data_dir, password, env)
    servers: list[Server] = []
    try:
        bare = start_bare(work, env, args.bare_handler, servers)
        real = start_real(work, data_dir, env, servers)
        token = login(real, password)
        scenarios: list[Scenario] = [
            (
                "bare",
                f"GET /bare (baseline, {args.bare_handler})",
                "req",
                [bare],
                single_get(get_request("/bare", bare.port)),
            ),
            *real_scenarios("sqlite", "SQLite, 1 worker", [real], token),
        ]
        results = run_loop(measure(scenarios, args))
        return results, {"the SQLite server": rss_kb(real), "(bare baseline)": rss_kb(bare)}
    finally:
        for server in servers:
            server.stop()


def run_postgres(
    args: argparse.Namespace, work: Path, password: str, env: dict[str, str]
) -> tuple[dict[str, Result], dict[str, int | None]]:
    data_dir = work / "data-pg"
    with postgres_database(args.postgres) as url:
        env = {**env, "TGFLOW_DATABASE_URL": url}
        seed(data_dir, password, env)
        servers: list[Server] = []
        try:
            first = start_real(work, data_dir, env, servers, name="pg-1")
            token = login(first, password)
            results = run_loop(
                measure(real_scenarios("pg1", "PostgreSQL, 1 worker", [first], token), args)
            )
            second = start_real(work, data_dir, env, servers, name="pg-2")
            results |= run_loop(
                measure(
                    real_scenarios("pg2", "PostgreSQL, 2 workers", [first, second], token), args
                )
            )
            return results, {
                "a PostgreSQL worker": max(filter(None, (rss_kb(s) for s in servers)), default=None)
            }
        finally:
            for server in servers:
                server.stop()


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if not SERVER_CLI.exists():
        raise SystemExit(f"{SERVER_CLI} not found: run with the project's venv python")
    work, _data_dir, env, password = prepare_run("reference backend", "tgflow-bench-")
    print(f"work dir {work}; {args.connections} connections", flush=True)
    started = time.monotonic()
    try:
        results, rss = run_sqlite(args, work, password, env)
        if not args.no_postgres:
            pg_results, pg_rss = run_postgres(args, work, password, env)
            results |= pg_results
            rss |= pg_rss
    finally:
        if args.keep_data:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    bare_rss = rss.pop("(bare baseline)")
    all_met = print_report(results, rss)
    took = time.monotonic() - started
    print(f"bare baseline RSS after the run: {kib_to_mb(bare_rss)}; the run took {took:.0f} s")
    return 0 if all_met else 1


#: A smoke run's arguments (``bench/run.py --quick``).
QUICK = [*QUICK_LOAD]


def run(quick: bool) -> BenchRun:
    """bench/run.py's entry: the full run (the defaults) or a smoke run."""
    return collect(main, QUICK if quick else [])


if __name__ == "__main__":
    sys.exit(main())
