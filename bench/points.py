"""The points wallet (#13): ``POST /points/spend`` and ``GET /points/balance`` at 32 connections.

One run, one load generator (this process, ``bench.harness``): the bare FastAPI baseline
(``GET /bare``) measured in the same run, then SQLite and (unless ``--no-postgres``) a throwaway
PostgreSQL database, one server worker each. ``--users`` accounts are created and granted points
through the services before the server starts, then sign in over HTTP; the requests go round-robin
over their tokens (so spends of different users do not all queue on one wallet lock, as in real
use), every spend with a new idempotency key.

Targets: seed 001's p95 < 200 ms for both requests; the throughput is printed beside the bare
baseline (a ratio, no target). The exit status is 1 when a target is not met or a request failed.

Usage, from the repository root::

    .venv/bin/python -m bench.points [--seconds 8] [--warmup 2] [--connections 32] [--users 32]
        [--postgres postgresql://postgres@127.0.0.1:5432/test | --no-postgres]
"""

from __future__ import annotations

import argparse
import itertools
import secrets
import shutil
from collections.abc import Sequence
from pathlib import Path

import httpx

from bench.harness import (
    LOAD_OPTIONS_RULE,
    QUICK_LOAD,
    SERVER_CLI,
    BenchRun,
    Operation,
    Result,
    Server,
    add_load_options,
    collect,
    get_request,
    load_options_valid,
    measure_bare,
    measured,
    post_request,
    postgres_database,
    prepare_run,
    print_table,
    print_targets,
    run_loop,
    start_real,
    timed,
)
from server_stub.config import Settings
from server_stub.services.points.ledger import Kind
from server_stub.wiring import build_services

MAX_P95_MS = 200.0
PLAN = "bench-points"
GRANT = 10**9


def seed_users(data_dir: Path, database_url: str | None, users: int, password: str) -> list[str]:
    """``users`` accounts on a plan, each granted ``GRANT`` points; returns their e-mails."""
    services = build_services(
        Settings(data_dir=data_dir, database_url=database_url, rate_limit_enabled=False)
    )
    try:
        services.plans.upsert(PLAN, monthly_quota=1000, max_devices=5, features=["broadcast"])
        emails = []
        for i in range(users):
            email = f"wallet-{i:03d}@bench.example"
            user = services.auth.create_user(email, password, PLAN)
            services.points.credit(user.id, GRANT, kind=Kind.GRANT, actor="system")
            emails.append(email)
        return emails
    finally:
        services.ctx.engine.dispose()


def sign_in(server: Server, emails: Sequence[str], password: str) -> list[str]:
    tokens = []
    with httpx.Client(base_url=server.base_url, timeout=30.0, trust_env=False) as client:
        for i, email in enumerate(emails):
            r = client.post(
                "/auth/login",
                json={
                    "email": email,
                    "password": password,
                    "device_fingerprint": f"bench-points-device-{i:06d}",
                },
            )
            if r.status_code != 200:
                raise SystemExit(f"login of {email} failed: {r.status_code} {r.text[:300]}")
            tokens.append(r.json()["token"])
    return tokens


def spend_op(port: int, tokens: Sequence[str]) -> Operation:
    counter = itertools.count()
    run = secrets.token_hex(4)

    def next_raw() -> bytes:
        n = next(counter)
        body = {"amount": 1, "idempotency_key": f"bench-{run}-{n:012d}"}
        return post_request("/points/spend", port, tokens[n % len(tokens)], body)

    return timed(next_raw)


def balance_op(port: int, tokens: Sequence[str]) -> Operation:
    requests = [get_request("/points/balance", port, t) for t in tokens]
    counter = itertools.count()
    return timed(lambda: requests[next(counter) % len(requests)])


def run_backend(
    key: str,
    label: str,
    database_url: str | None,
    args: argparse.Namespace,
    work: Path,
    env: dict[str, str],
    results: dict[str, Result],
) -> None:
    data_dir = work / f"data-{key}"
    password = secrets.token_hex(16)
    print(f"{label}: seeding {args.users} wallets ...", flush=True)
    emails = seed_users(data_dir, database_url, args.users, password)
    if database_url is not None:
        env = {**env, "TGFLOW_DATABASE_URL": database_url}
    servers: list[Server] = []
    try:
        server = start_real(work, data_dir, env, servers, name=f"tgflow-server-{key}")
        tokens = sign_in(server, emails, password)
        port, pids = server.port, [server.process.pid]
        for name, op in (
            ("GET /points/balance", balance_op(port, tokens)),
            ("POST /points/spend", spend_op(port, tokens)),
        ):
            results[f"{key} {name}"] = run_loop(
                measured(f"{name} ({label})", [port], op, args, pids)
            )
    finally:
        for s in servers:
            s.stop()


def report(results: dict[str, Result]) -> bool:
    print_table(results, 52)
    base = results["bare"].rate
    checks: list[tuple[str, bool, str]] = []
    print()
    for key, r in results.items():
        if key == "bare":
            continue
        ratio = r.rate / base if base else 0.0
        p95 = r.request_p(95)
        print(f"{r.name:60} {r.rate:8.0f}/s {ratio:5.2f}x bare, p95 {p95:6.1f} ms")
        checks.append((f"{r.name}: p95 < {MAX_P95_MS:g} ms", p95 < MAX_P95_MS, f"{p95:.1f} ms"))
    failures = [r.name for r in results.values() if r.sample.failed]
    return print_targets(checks, failures)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark the points wallet: spend and balance at many connections.",
    )
    add_load_options(parser, seconds=8.0, warmup=2.0)
    parser.add_argument("--users", type=int, default=32, help="wallets the requests spread over")
    args = parser.parse_args(argv)
    if not load_options_valid(args) or not 1 <= args.users <= 10_000:
        parser.error(f"need {LOAD_OPTIONS_RULE}, 1 <= --users <= 10000")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if not SERVER_CLI.exists():
        raise SystemExit(f"{SERVER_CLI} not found: run with the project's venv python")
    work, _data_dir, env, _password = prepare_run("points wallet", "tgflow-bench-points-")
    print(f"work dir {work}; {args.connections} connections, {args.users} wallets", flush=True)
    results: dict[str, Result] = {}
    try:
        results["bare"] = measure_bare(work, env, args)
        run_backend("sqlite", "SQLite, 1 worker", None, args, work, env, results)
        if not args.no_postgres:
            with postgres_database(args.postgres) as url:
                run_backend("pg", "PostgreSQL, 1 worker", url, args, work, env, results)
    finally:
        if not args.keep_data:
            shutil.rmtree(work, ignore_errors=True)
    return 0 if report(results) else 1


#: A smoke run's arguments (``bench/run.py --quick``).
QUICK = [*QUICK_LOAD, "--users", "2"]


def run(quick: bool) -> BenchRun:
    """bench/run.py's entry: the full run (the defaults) or a smoke run."""
    return collect(main, QUICK if quick else [])


if __name__ == "__main__":
    raise SystemExit(main())
