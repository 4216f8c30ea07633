"""Billing (#12): signed webhook ingest and the inbox's drain rate.

One run, one load generator (this process, ``bench.harness``):

1. the bare FastAPI baseline (``GET /bare``), measured in the same run;
2. ``POST /webhooks/stripe`` at ``--connections`` connections: each request a new Stripe event
   (``payment_intent.succeeded`` of an invoice billing does not know), signed as Stripe signs
   (``Stripe-Signature`` ``t=``/``v1=``): verified, stored in the inbox, acknowledged. On SQLite
   with one worker, and on PostgreSQL (a throwaway database on ``--postgres``) with one worker and
   with ``--pg-workers`` workers. The servers' own webhook workers idle during the load
   (``TGFLOW_WEBHOOK_POLL_SECONDS=300``), so ingest is measured alone;
3. the drain: what each ingest stored, applied afterwards by ONE worker in this process
   (``WebhookInbox.drain``: claim, read the event, apply it, mark it) — events per second.

Targets (issue #12): ingest >= 0.3x bare on one worker; > 1000 accepted webhooks/s on PostgreSQL
with the documented number of workers. The exit status is 1 when a target is not met or a
request failed.

Usage, from the repository root::

    .venv/bin/python -m bench.billing [--seconds 8] [--warmup 2] [--connections 32]
        [--pg-workers 2] [--postgres postgresql://postgres@127.0.0.1:5432/test | --no-postgres]
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
    HOST,
    LOAD_OPTIONS_RULE,
    QUICK_LOAD,
    BenchRun,
    Operation,
    Result,
    Server,
    add_load_options,
    collect,
    load_options_valid,
    measure_bare,
    measured,
    postgres_database,
    prepare_run,
    print_table,
    print_targets,
    run_loop,
    start_real,
    timed,
)
from server_stub.config import Settings
from server_stub.services.billing.signatures import stripe_signature_header
from server_stub.wiring import build_services

MIN_RATIO = 0.3
MIN_PG_RATE = 1000.0


def signed_event_request(port: int, secret: str, event_id: str) -> bytes:
    """A Stripe webhook delivery: the event's JSON and its ``Stripe-Signature``."""
    now = int(time.time())
    body = json.dumps(
        {
            "id": event_id,
            "object": "event",
            "type": "payment_intent.succeeded",
            "created": now,
            "livemode": False,
            "data": {
                "object": {
                    "id": "pi_" + event_id[-24:],
                    "object": "payment_intent",
                    "amount": 99_000,
                    "amount_received": 99_000,
                    "currency": "rub",
                    "status": "succeeded",
                    "metadata": {"invoice_id": "bench-unknown-invoice"},
                }
            },
        },
        separators=(",", ":"),
    ).encode()
    head = (
        f"POST /webhooks/stripe HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        f"Stripe-Signature: {stripe_signature_header(secret, body, now)}\r\n\r\n"
    )
    return head.encode() + body


def ingest_op(port: int, secret: str) -> Operation:
    counter = iter(range(1 << 62))
    prefix = secrets.token_hex(6)

    return timed(
        lambda: signed_event_request(port, secret, f"evt_bench_{prefix}_{next(counter):012d}")
    )


def ingest(
    name: str,
    workers: int,
    database_url: str | None,
    args: argparse.Namespace,
    work: Path,
    env: dict[str, str],
    secret: str,
) -> Result:
    data_dir = work / f"data-{name}"
    run_env = {**env, "TGFLOW_DATA_DIR": str(data_dir)}
    if database_url is not None:
        run_env["TGFLOW_DATABASE_URL"] = database_url
    servers: list[Server] = []
    try:
        real = start_real(work, data_dir, run_env, servers, workers=workers, name=name)
        return run_loop(
            measured(
                f"POST /webhooks/stripe ({name})",
                [real.port],
                ingest_op(real.port, secret),
                args,
                [real.process.pid],
                shown=name,
            )
        )
    finally:
        for server in servers:
            server.stop()


def drain(data_dir: Path, database_url: str | None, secret: str) -> tuple[int, float]:
    """Apply what an ingest stored with one worker in this process: (events, seconds)."""
    settings = Settings(
        data_dir=data_dir,
        database_url=database_url,
        stripe_webhook_secrets=[secret],
        # The events read without calling Stripe (a payment_intent event carries all it says),
        # but the adapter must exist: a provider not configured leaves its events queued.
        stripe_api_key="sk_test_bench",
        stripe_api_base="http://127.0.0.1:9",
        rate_limit_enabled=False,
    )
    services = build_services(settings)
    try:
        started = time.perf_counter()
        applied = services.webhooks.drain()
        return applied, time.perf_counter() - started
    finally:
        services.ctx.engine.dispose()


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark billing: signed webhook ingest and the inbox's drain rate."
    )
    add_load_options(parser, seconds=8.0, warmup=2.0)
    parser.add_argument(
        "--pg-workers", type=int, default=2, help="server workers of the PostgreSQL scale run"
    )
    args = parser.parse_args(argv)
    if not load_options_valid(args) or not 1 <= args.pg_workers <= 32:
        parser.error(f"need {LOAD_OPTIONS_RULE}, 1 <= --pg-workers <= 32")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    work, _data_dir, env, _password = prepare_run("billing webhooks", "tgflow-bench-billing-")
    secret = "whsec_bench_" + secrets.token_hex(16)
    env |= {"TGFLOW_STRIPE_WEBHOOK_SECRETS": secret, "TGFLOW_WEBHOOK_POLL_SECONDS": "300"}
    print(f"work dir {work}; {args.connections} connections", flush=True)
    started = time.monotonic()
    results: dict[str, Result] = {}
    drains: dict[str, tuple[int, float]] = {}
    try:
        results["bare"] = measure_bare(work, env, args)
        results["sqlite"] = ingest("sqlite-1w", 1, None, args, work, env, secret)
        drains["sqlite"] = drain(work / "data-sqlite-1w", None, secret)
        if not args.no_postgres:
            with postgres_database(args.postgres) as url:
                results["pg"] = ingest("pg-1w", 1, url, args, work, env, secret)
            with postgres_database(args.postgres) as url:
                name = f"pg-{args.pg_workers}w"
                results["pg-n"] = ingest(name, args.pg_workers, url, args, work, env, secret)
                drains["pg"] = drain(work / f"data-{name}", url, secret)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print_table(results, 44)
    base = results["bare"].rate
    checks: list[tuple[str, bool, str]] = []
    print()
    for key in ("sqlite", "pg"):
        if key in results:
            r = results[key]
            ratio = r.rate / base if base else 0.0
            print(f"{r.name + ' / bare':60} {ratio:.2f}x")
            checks.append((f"{r.name} >= {MIN_RATIO}x bare", ratio >= MIN_RATIO, f"{ratio:.2f}x"))
    if "pg-n" in results:
        r = results["pg-n"]
        checks.append((f"{r.name} > {MIN_PG_RATE:.0f}/s", r.rate > MIN_PG_RATE, f"{r.rate:,.0f}/s"))
    for key, (applied, seconds) in drains.items():
        rate = applied / seconds if seconds > 0 else 0.0
        print(
            f"drain ({key}, one worker in-process): {applied} events in {seconds:.1f} s = "
            f"{rate:,.0f} events/s"
        )
    failures = [r.name for r in results.values() if r.sample.failed]
    met = print_targets(checks, failures)
    print(f"the run took {time.monotonic() - started:.0f} s")
    return 0 if met else 1


#: A smoke run's arguments (``bench/run.py --quick``).
QUICK = [*QUICK_LOAD]


def run(quick: bool) -> BenchRun:
    """bench/run.py's entry: the full run (the defaults) or a smoke run."""
    return collect(main, QUICK if quick else [])


if __name__ == "__main__":
    sys.exit(main())
