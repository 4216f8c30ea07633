"""The license portal (#11) at seed 003's scale: product API throughput and staff read latency.

One run, one load generator (this process, ``bench.harness``), for SQLite then PostgreSQL (a
throwaway database on ``--postgres``), one server worker each:

1. throughput at ``--connections`` connections against the bare FastAPI baseline (``GET /bare``,
   measured in the same run): ``POST /licenses/activate`` (a new machine each time, spread over
   ``--product-licenses`` licenses that have no activation or per-hour limits) and
   ``POST /licenses/heartbeat`` (round-robin over the activations the first scenario made);
2. at seed 003's scale (10,000 active licenses of 1,000 clients, written by
   ``tests/helpers/portal_seed.py``'s ``seed_scale``, and a few hundred payments), the latency a
   lone staff user sees (``--requests`` sequential requests each, one keep-alive connection) on
   the lists and reports a portal UI calls, and the time of one signed license export.

The staff Admin is created through the services before the server starts, then enrols in TOTP
over HTTP like a person would (``/staff/login``, ``/staff/me/totp/setup``, ``/enable``).

Targets (ours, for this scale):

- every list and report: p95 <= 200 ms, on SQLite and on PostgreSQL;
- activation and heartbeat throughput >= 0.25x the bare baseline.

The export has no target; its time is printed. The exit status is 1 when a target is not met or
a request failed. Everything runs on 127.0.0.1; the temporary data dir and the database are
removed at the end (``--keep-data`` keeps the dir and the server logs).

Usage, from the repository root::

    .venv/bin/python -m bench.portal [--seconds 8] [--warmup 2] [--connections 32]
        [--requests 150] [--postgres postgresql://postgres@127.0.0.1:5432/test | --no-postgres]
"""

from __future__ import annotations

import argparse
import json
import secrets
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import httpx
import pyotp

from bench.harness import (
    HOST,
    LOAD_OPTIONS_RULE,
    QUICK_LOAD,
    SERVER_CLI,
    BenchRun,
    Connection,
    Operation,
    Result,
    Sample,
    Server,
    add_load_options,
    collect,
    get_request,
    load_options_valid,
    measure_bare,
    measured,
    percentile,
    postgres_database,
    prepare_run,
    print_table,
    print_targets,
    request_series,
    run_loop,
    start_real,
)
from server_stub.config import Settings
from server_stub.services.integrations import PaymentReport
from server_stub.services.integrations.signatures import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from server_stub.services.staff import Role
from server_stub.wiring import Services, build_services
from tests.helpers.activation import PortalLicense, activate_body, heartbeat_body, make_license
from tests.helpers.portal_seed import seed_scale

MAX_P95_MS = 200.0
MIN_RATIO = 0.25
ADMIN_EMAIL = "bench-admin@staff.example"
PAGE = 100
#: Seed 003's scale.
CLIENTS = 1_000
LICENSES = 10_000


@dataclass
class Backend:
    """One database under test: its label, its server and its Admin's access token."""

    key: str
    label: str
    server: Server
    token: str


# --- seeding (in this process, through the services, before the server starts) ------------------


def seed_portal(
    data_dir: Path, database_url: str | None, args: argparse.Namespace, password: str
) -> list[PortalLicense]:
    """Seed 003's scale, some payments, the Admin, and the product API's licenses."""
    settings = Settings(data_dir=data_dir, database_url=database_url, rate_limit_enabled=False)
    services = build_services(settings)
    try:
        now = services.ctx.clock.now()
        seed_scale(services.ctx.write, now, clients=args.clients, licenses=args.licenses)
        _seed_payments(services, args.payments)
        services.staff.create("bench", ADMIN_EMAIL, "Bench Admin", Role.ADMIN, password)
        # No max_activations, activations_per_hour or checkouts_per_hour: every activation in
        # the throughput scenario is a real new machine, never refused by a limit.
        return [make_license(services) for _ in range(args.product_licenses)]
    finally:
        services.ctx.engine.dispose()


def _seed_payments(services: Services, count: int) -> None:
    now = services.ctx.clock.now()
    for i in range(count):
        services.integrations.record_payment(
            PaymentReport(
                source="1c",
                external_id=f"bench-pay-{i:06d}",
                contract_number=f"C-{i % CLIENTS:06d}",
                amount_minor=100_000 + i,
                currency="RUB",
                paid_at=now - timedelta(hours=i),
            )
        )


def admin_token(server: Server, password: str) -> str:
    """Log the Admin in and enrol TOTP over HTTP; the token of the session TOTP opened."""
    with httpx.Client(base_url=server.base_url, timeout=30.0, trust_env=False) as client:
        r = client.post("/staff/login", json={"email": ADMIN_EMAIL, "password": password})
        _expect(r, "staff login")
        headers = {"Authorization": f"Bearer {r.json()['token']}"}
        r = client.post("/staff/me/totp/setup", headers=headers)
        _expect(r, "TOTP setup")
        otp = pyotp.TOTP(r.json()["secret"]).now()
        r = client.post("/staff/me/totp/enable", headers=headers, json={"otp": otp})
        _expect(r, "TOTP enable")
        token: str = r.json()["tokens"]["token"]
        return token


def _expect(response: httpx.Response, what: str) -> None:
    if response.status_code != 200:
        raise SystemExit(f"{what} failed: {response.status_code} {response.text[:500]}")


# --- throughput -----------------------------------------------------------------------------------


def json_request(path: str, port: int, payload: dict[str, Any]) -> bytes:
    """A POST without a bearer token: the product API's credential is the license key."""
    body = json.dumps(payload, separators=(",", ":")).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nAccept: application/json\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


@dataclass
class Machines:
    """The activations made so far: (license, activation reply, fingerprint)."""

    live: list[tuple[PortalLicense, dict[str, Any], str]]


def activate_op(port: int, licenses: Sequence[PortalLicense], machines: Machines) -> Operation:
    counter = iter(range(1 << 62))
    prefix = secrets.token_hex(4)

    async def op(conn: Connection, request_latencies: list[float]) -> bool:
        n = next(counter)
        lic = licenses[n % len(licenses)]
        fp = f"bench-{prefix}-{n:012d}"
        start = time.perf_counter()
        status, body = await conn.request(
            json_request("/licenses/activate", port, activate_body(lic, fp))
        )
        request_latencies.append(time.perf_counter() - start)
        if status != 200:
            return False
        reply = json.loads(body)
        machines.live.append((lic, {k: reply[k] for k in ("activation_id", "file_version")}, fp))
        return True

    return op


def heartbeat_op(port: int, machines: Machines) -> Operation:
    requests = [
        json_request("/licenses/heartbeat", port, heartbeat_body(lic, reply, fp))
        for lic, reply, fp in machines.live
    ]
    counter = iter(range(1 << 62))

    async def op(conn: Connection, request_latencies: list[float]) -> bool:
        start = time.perf_counter()
        status, _ = await conn.request(requests[next(counter) % len(requests)])
        request_latencies.append(time.perf_counter() - start)
        return status == 200

    return op


async def measure_throughput(
    backend: Backend, licenses: Sequence[PortalLicense], args: argparse.Namespace
) -> dict[str, Result]:
    port, pids = backend.server.port, [backend.server.process.pid]
    machines = Machines([])
    results = {}
    for name, make in (
        ("activate", lambda: activate_op(port, licenses, machines)),
        ("heartbeat", lambda: heartbeat_op(port, machines)),
    ):
        if name == "heartbeat" and not machines.live:
            print("  no activation succeeded: heartbeat skipped", flush=True)
            continue
        label = f"POST /licenses/{name} ({backend.label})"
        results[f"{backend.key} {name}"] = await measured(label, [port], make(), args, pids)
    return results


# --- staff read latency ---------------------------------------------------------------------------


def deep_cursor(server: Server, token: str, path: str, pages: int) -> str:
    """The ``next_cursor`` after ``pages`` pages of ``PAGE`` rows: a page deep in the list."""
    cursor: str | None = None
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=server.base_url, timeout=30.0, trust_env=False) as client:
        for _ in range(pages):
            params: dict[str, str | int] = {"limit": PAGE}
            if cursor is not None:
                params["cursor"] = cursor
            r = client.get(path, params=params, headers=headers)
            _expect(r, f"GET {path}")
            cursor = r.json()["next_cursor"]
            if cursor is None:
                raise SystemExit(f"GET {path} ran out of pages before page {pages}")
    assert cursor is not None
    return cursor


def read_paths(backend: Backend, args: argparse.Namespace) -> list[str]:
    """The lists and reports a portal UI calls, as the paths (with queries) requested."""
    server, token = backend.server, backend.token
    clients_deep = deep_cursor(server, token, "/staff/clients", args.clients * 8 // 10 // PAGE)
    licenses_deep = deep_cursor(server, token, "/staff/licenses", args.licenses * 8 // 10 // PAGE)
    today = time.gmtime()
    this_month = f"{today.tm_year}-{today.tm_mon:02d}"
    year_ago = f"{today.tm_year - 1}-{today.tm_mon:02d}"
    day = time.strftime("%Y-%m-%d", today)
    month_ago = time.strftime("%Y-%m-%d", time.gmtime(time.time() - 30 * 86400))
    in_30_days = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 30 * 86400))
    return [
        "/staff/clients",
        "/staff/clients?segment=enterprise",
        "/staff/clients?" + urlencode({"q": "Клиент 77"}, quote_via=quote),
        f"/staff/clients?cursor={quote(clients_deep)}",
        "/staff/licenses",
        f"/staff/licenses?status=active&module=multi&expiring_before={quote(in_30_days)}",
        f"/staff/licenses?cursor={quote(licenses_deep)}",
        "/staff/activations",
        "/staff/payments",
        f"/staff/reports/licenses-by-month?from_month={year_ago}&to_month={this_month}",
        "/staff/reports/renewals-forecast?months=12",
        f"/staff/reports/module-usage?from_day={month_ago}&to_day={day}",
        "/staff/reports/sales-by-module",
        "/staff/reports/dashboard",
    ]


async def measure_reads(backend: Backend, paths: Sequence[str], count: int) -> dict[str, Sample]:
    port, token = backend.server.port, backend.token
    results = {}
    for path in paths:
        results[path] = await request_series(port, get_request(path, port, token), count)
    return results


def time_export(server: Server, secret: str) -> tuple[float, int, int]:
    """One signed ``/external/licenses/export?format=json``: seconds, status, licenses."""
    target = "/external/licenses/export?format=json"
    timestamp = str(int(time.time()))
    headers = {
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: sign(secret.encode(), timestamp, "GET", target.encode(), b""),
    }
    with httpx.Client(base_url=server.base_url, timeout=120.0, trust_env=False) as client:
        start = time.perf_counter()
        r = client.get(target, headers=headers)
        took = time.perf_counter() - start
    count = len(r.json()["licenses"]) if r.status_code == 200 else 0
    return took, r.status_code, count


# --- one backend ----------------------------------------------------------------------------------


@dataclass
class Outcome:
    throughput: dict[str, Result]
    reads: dict[str, dict[str, Sample]]
    exports: dict[str, tuple[float, int, int]]


def run_backend(
    key: str,
    label: str,
    database_url: str | None,
    args: argparse.Namespace,
    work: Path,
    env: dict[str, str],
    secret: str,
    outcome: Outcome,
) -> None:
    data_dir = work / f"data-{key}"
    password = secrets.token_hex(16)
    started = time.monotonic()
    print(f"{label}: seeding ...", flush=True)
    licenses = seed_portal(data_dir, database_url, args, password)
    print(f"  seeded in {time.monotonic() - started:.0f} s", flush=True)
    if database_url is not None:
        env = {**env, "TGFLOW_DATABASE_URL": database_url}
    servers: list[Server] = []
    try:
        server = start_real(work, data_dir, env, servers, name=f"tgflow-server-{key}")
        backend = Backend(key, label, server, admin_token(server, password))
        paths = read_paths(backend, args)
        print(f"  {len(paths)} lists and reports, {args.requests} requests each ...", flush=True)
        outcome.reads[key] = run_loop(measure_reads(backend, paths, args.requests))
        outcome.exports[key] = time_export(server, secret)
        outcome.throughput |= run_loop(measure_throughput(backend, licenses, args))
    finally:
        for s in servers:
            s.stop()


# --- report ---------------------------------------------------------------------------------------


def print_reads(outcome: Outcome, labels: dict[str, str]) -> list[tuple[str, bool, str]]:
    checks = []
    for key, reads in outcome.reads.items():
        print()
        print(f"{labels[key]}: sequential latency, one connection")
        print(f"{'request':78} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} {'failed':>6}")
        for path, s in reads.items():
            p50, p95 = (percentile(s.request_latencies, q) * 1000 for q in (50, 95))
            top = max(s.request_latencies, default=float("nan")) * 1000
            print(f"{path[:78]:78} {p50:8.1f} {p95:8.1f} {top:8.1f} {s.failed:6d}")
            if s.errors:
                print(f"{'':78} errors: {s.errors}")
        p95s = {p: percentile(s.request_latencies, 95) * 1000 for p, s in reads.items()}
        misses = [f"{p.split('?')[0]} {ms:.0f} ms" for p, ms in p95s.items() if ms > MAX_P95_MS]
        worst = max(p95s, key=lambda p: p95s[p])
        checks.append(
            (
                f"{labels[key]}: every list and report p95 <= {MAX_P95_MS:g} ms",
                not misses,
                "; ".join(misses) if misses else f"worst {p95s[worst]:.0f} ms, {worst[:60]}",
            )
        )
        took, status, count = outcome.exports[key]
        print(f"export ?format=json once: {took * 1000:.0f} ms, HTTP {status}, {count} licenses")
    return checks


def print_report(outcome: Outcome, labels: dict[str, str]) -> bool:
    results = outcome.throughput
    print_table(results, 48)
    base = results["bare"].rate
    checks: list[tuple[str, bool, str]] = []
    print()
    for key, r in results.items():
        if key == "bare":
            continue
        ratio = r.rate / base if base else 0.0
        print(f"{r.name + ' / bare':60} {ratio:.2f}x")
        checks.append(
            (f"{r.name} >= {MIN_RATIO}x bare", ratio >= MIN_RATIO, f"{ratio:.2f}x, {r.rate:.0f}/s")
        )
    checks += print_reads(outcome, labels)
    failures = [r.name for r in results.values() if r.sample.failed] + [
        f"{key} {path}"
        for key, reads in outcome.reads.items()
        for path, s in reads.items()
        if s.failed
    ]
    failures += [f"{key} export" for key, done in outcome.exports.items() if done[1] != 200]
    return print_targets(checks, failures)


# --- main -----------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark the license portal: product API throughput, staff read latency.",
    )
    add_load_options(parser, seconds=8.0, warmup=2.0)
    parser.add_argument("--requests", type=int, default=150, help="requests per list or report")
    parser.add_argument("--clients", type=int, default=CLIENTS, help="seeded clients")
    parser.add_argument("--licenses", type=int, default=LICENSES, help="seeded licenses")
    parser.add_argument("--payments", type=int, default=300, help="seeded payments")
    parser.add_argument(
        "--product-licenses", type=int, default=200, help="licenses the activations spread over"
    )
    args = parser.parse_args(argv)
    if (
        not load_options_valid(args)
        or not 1 <= args.requests <= 10_000
        or not 10 * PAGE <= args.licenses <= 1_000_000
        or not 10 * PAGE <= args.clients <= args.licenses
        or not 0 <= args.payments <= args.clients
        or not 1 <= args.product_licenses <= 10_000
    ):
        parser.error(
            f"need {LOAD_OPTIONS_RULE}, "
            "1 <= --requests <= 10000, 1000 <= --clients <= --licenses <= 1000000, "
            "0 <= --payments <= --clients, 1 <= --product-licenses <= 10000"
        )
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if not SERVER_CLI.exists():
        raise SystemExit(f"{SERVER_CLI} not found: run with the project's venv python")
    work, _data_dir, env, _password = prepare_run("license portal", "tgflow-bench-portal-")
    secret = secrets.token_hex(32)
    env["TGFLOW_EXTERNAL_HMAC_SECRETS"] = secret
    print(f"work dir {work}; {args.connections} connections", flush=True)
    started = time.monotonic()
    outcome = Outcome({}, {}, {})
    labels = {"sqlite": "SQLite, 1 worker", "pg": "PostgreSQL, 1 worker"}
    try:
        outcome.throughput["bare"] = measure_bare(work, env, args)
        run_backend("sqlite", labels["sqlite"], None, args, work, env, secret, outcome)
        if not args.no_postgres:
            with postgres_database(args.postgres) as url:
                run_backend("pg", labels["pg"], url, args, work, env, secret, outcome)
    finally:
        if args.keep_data:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    all_met = print_report(outcome, labels)
    print(f"the run took {time.monotonic() - started:.0f} s")
    return 0 if all_met else 1


#: A smoke run's arguments (``bench/run.py --quick``).
QUICK = [
    *QUICK_LOAD,
    "--requests",
    "3",
    "--clients",
    str(10 * PAGE),
    "--licenses",
    str(10 * PAGE),
    "--payments",
    "10",
    "--product-licenses",
    "5",
]


def run(quick: bool) -> BenchRun:
    """bench/run.py's entry: the full run (the defaults) or a smoke run."""
    return collect(main, QUICK if quick else [])


if __name__ == "__main__":
    sys.exit(main())
