"""Marketplace benchmark (issue #5): the app-side token check and ``GET /marketplace/installed``.

1. ``AppTokenVerifier.verify`` on valid User App Access Tokens (a distinct ``jti`` each) with the
   issuing backend's key cached, so no I/O (target: median <= 150 us), printed beside one raw
   ES256 verify of the same token (``jwt.decode`` with the public key, ``algorithms=["ES256"]``,
   the audience) measured in the same run: the two are timed alternately, token by token, so a
   background load disturbs both alike;
2. ``GET /marketplace/installed`` with a Backend User Token against ``tgflow-server run`` (SQLite in
   a temporary data dir; one backend with three apps licensed and installed: a trial, a free app
   and a paid app the operator activated), beside the bare baseline of bench/server.py and
   ``GET /license``, all three with bench/server.py's load driver at the same concurrency, so the
   figures compare with those of bench/server.py.

The backend and the apps are created with ``tgflow-server marketplace``; licenses, installations
and the user token go through the HTTP API as a backend would ask for them. The backend's key is
fetched once from the server's public JWKS, as an app would, before the verifier is timed; the
bench checks that no request is made while it is timed. The exit status is 1 when a target is not
met or a request failed.

Usage: ``.venv/bin/python -m bench.marketplace [--tokens 20000] [--seconds 10] [--warmup 3]
[--connections 32]``
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import ec

from agent.marketplace import AppTokenVerifier, BackendKeyCache, mint_app_token, public_jwk
from bench import harness
from bench.server import LICENSE_MAX_P95_MS, LICENSE_MIN_RATIO

TARGET_VERIFY_US = 150.0
#: No throughput target is set for ``/marketplace/installed``; it is held to the one of
#: ``/license`` (bench/server.py), the other authenticated read of the same server.
INSTALLED_MIN_RATIO = LICENSE_MIN_RATIO
INSTALLED_MAX_P95_MS = LICENSE_MAX_P95_MS

APP_ID = "bench-chat"
#: (app id, price, license plan asked for; ``monthly`` is then activated by the operator).
APPS = (
    (APP_ID, "monthly=990", "trial"),
    ("bench-notes", "perpetual=0", "perpetual"),
    ("bench-stats", "monthly=1990", "monthly"),
)
PERMISSIONS = ("chat:read", "chat:write")
#: Nothing listens there: the install callbacks fail fast and are retried 30 s later at the
#: earliest, so they cost the server next to nothing while it is measured.
CALLBACK_URL = "http://127.0.0.1:9/callback"


# --- seeding --------------------------------------------------------------------------------------


def cli(args: list[str], env: dict[str, str], data_dir: Path) -> str:
    return harness.run_cli([*args, "--data-dir", str(data_dir)], env)


def printed(output: str, label: str) -> str:
    for line in output.splitlines():
        if line.startswith(f"{label}: "):
            return line.removeprefix(f"{label}: ").strip()
    raise SystemExit(f"no {label!r} in the CLI output:\n{output}")


def create_marketplace(
    work: Path, data_dir: Path, env: dict[str, str], key: ec.EllipticCurvePrivateKey
) -> tuple[str, str]:
    """Register the backend and list the apps; return the backend id and its admin token."""
    jwk_file = work / "backend-jwk.json"
    jwk_file.write_text(json.dumps(public_jwk(key)), encoding="utf-8")
    create = ["marketplace", "backend", "create", "--name", "Bench backend"]
    out = cli([*create, "--jwk-file", str(jwk_file)], env, data_dir)
    backend_id, admin_token = printed(out, "backend id"), printed(out, "admin token")
    for app_id, price, _ in APPS:
        options = {
            "--id": app_id,
            "--name": app_id.title(),
            "--developer": "Bench Co",
            "--description": f"The {app_id} app of the bench",
            "--price": price,
            "--currency": "USD",
            "--artifact-url": f"https://apps.example.com/{app_id}.zip",
            "--artifact-sha256": "0" * 64,
            "--artifact-size": "1024",
            "--iframe-url": f"https://apps.example.com/{app_id}/",
            "--callback-url": CALLBACK_URL,
        }
        flat = [word for option in options.items() for word in option]
        cli(["marketplace", "app", "create", *flat, "--permission", *PERMISSIONS], env, data_dir)
    return backend_id, admin_token


def license_and_install(
    real: harness.Server,
    backend_id: str,
    admin_token: str,
    env: dict[str, str],
    data_dir: Path,
) -> str:
    """License and install every app as the backend would; return a Backend User Token."""
    auth = {"Authorization": f"Bearer {admin_token}"}
    with httpx.Client(
        base_url=real.base_url, headers=auth, timeout=30.0, trust_env=False
    ) as client:
        for app_id, _, plan in APPS:
            client.post("/marketplace/licenses", json={"app_id": app_id, "plan": plan})
            if plan == "monthly":
                args = ["marketplace", "license", "activate", "--backend", backend_id]
                cli([*args, "--app", app_id], env, data_dir)
            response = client.post("/marketplace/installations", json={"app_id": app_id})
            if response.status_code != 201:
                raise SystemExit(
                    f"installing {app_id} failed: {response.status_code} {response.text}"
                )
        response = client.post("/marketplace/user-tokens")
        if response.status_code != 200:
            raise SystemExit(f"no user token: {response.status_code} {response.text}")
        user_token: str = response.json()["token"]
        installed = client.get(
            "/marketplace/installed", headers={"Authorization": f"Bearer {user_token}"}
        ).json()
    listed = sorted(app["id"] for app in installed["apps"])
    if listed != sorted(app_id for app_id, _, _ in APPS):
        raise SystemExit(f"/marketplace/installed lists {listed}, not every app")
    return user_token


# --- 1. the verifier ------------------------------------------------------------------------------


def measure_verifier(
    real: harness.Server, backend_id: str, key: ec.EllipticCurvePrivateKey, tokens: int
) -> tuple[list[float], list[float]]:
    """Time ``verify`` and a raw ES256 ``jwt.decode`` of the same tokens; seconds per token."""
    requests: list[str] = []
    http = httpx.Client(
        trust_env=False, event_hooks={"request": [lambda r: requests.append(str(r.url))]}
    )
    with http, BackendKeyCache(real.base_url, http=http) as keys:
        # The marketplace key only verifies entitlement snapshots, which ``verify`` never reads.
        unused = ec.generate_private_key(ec.SECP256R1()).public_key()
        verifier = AppTokenVerifier(APP_ID, keys, marketplace_key=unused)
        minted = [
            mint_app_token(
                key,
                backend_id=backend_id,
                user_id=f"user-{n % 100}",
                app_id=APP_ID,
                permissions=PERMISSIONS,
                jti=f"bench-{n:08d}",
            )
            for n in range(tokens + 200)
        ]
        warm, minted = minted[:200], minted[200:]
        for token in warm:  # the first one fetches the backend's JWKS from the server, once
            verifier.verify(token)
        public_key = keys.key(backend_id, jwt.get_unverified_header(minted[0])["kid"]).public_key
        fetched = len(requests)
        verifies: list[float] = []
        raws: list[float] = []
        for n, token in enumerate(minted):
            # Alternate which of the two goes first, so neither always runs on a warmer cache.
            for which in (0, 1) if n % 2 == 0 else (1, 0):
                if which == 0:
                    start = time.perf_counter()
                    verifier.verify(token)
                    verifies.append(time.perf_counter() - start)
                else:
                    start = time.perf_counter()
                    jwt.decode(token, public_key, algorithms=["ES256"], audience=APP_ID)
                    raws.append(time.perf_counter() - start)
    if fetched != 1 or len(requests) != fetched:
        raise SystemExit(f"expected one JWKS fetch before timing and none while timing: {requests}")
    return verifies, raws


# --- 2. GET /marketplace/installed ----------------------------------------------------------------


async def measure_http(
    bare: harness.Server,
    real: harness.Server,
    license_token: str,
    user_token: str,
    args: argparse.Namespace,
) -> list[harness.Result]:
    get = harness.get_request
    scenarios = [
        ("GET /bare (baseline, sync)", bare, get("/bare", bare.port)),
        ("GET /license", real, get("/license", real.port, license_token)),
        ("GET /marketplace/installed", real, get("/marketplace/installed", real.port, user_token)),
    ]
    results = []
    for name, server, raw in scenarios:
        results.append(
            await harness.measured(
                name, [server.port], harness.single_get(raw), args, [server.process.pid]
            )
        )
    return results


# --- report ---------------------------------------------------------------------------------------


def us(samples: Sequence[float], q: float | None = None) -> float:
    if q is None:
        return statistics.median(samples) * 1e6
    return harness.percentile(samples, q) * 1e6


def print_report(verifies: list[float], raws: list[float], results: list[harness.Result]) -> bool:
    verify_us, raw_us = us(verifies), us(raws)
    verify_ok = verify_us <= TARGET_VERIFY_US
    print()
    print(f"{'per token (us)':44} {'median':>8} {'p95':>8} {'p99':>8}")
    print(
        f"{'AppTokenVerifier.verify, key cached':44} {verify_us:8.1f} {us(verifies, 95):8.1f} "
        f"{us(verifies, 99):8.1f}   ({len(verifies)} tokens)"
    )
    print(
        f"{'raw ES256 jwt.decode of the same token':44} {raw_us:8.1f} {us(raws, 95):8.1f} "
        f"{us(raws, 99):8.1f}   ({len(raws)} tokens)"
    )
    print(f"  ratio verify / raw verify: {verify_us / raw_us:.2f}x")

    base, lic, inst = results
    print()
    print(
        f"{'scenario':30} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'ok':>7} "
        f"{'failed':>6} {'server CPU':>10} {'other CPU':>9} {'steal':>6}"
    )
    for r in results:
        server_cpu = f"{r.server_cpu_s / r.seconds:.0%}" if r.server_cpu_s is not None else "?"
        other = f"{r.other_cpu_s / r.seconds:.0%}" if r.other_cpu_s is not None else "?"
        steal = f"{r.steal_s / r.seconds:.0%}" if r.steal_s is not None else "?"
        print(
            f"{r.name:30} {r.rate:8,.0f} {r.p(50):8.2f} {r.p(95):8.2f} {r.p(99):8.2f} "
            f"{r.sample.ok:7d} {r.sample.failed:6d} {server_cpu:>10} {other:>9} {steal:>6}"
        )
        if r.sample.errors:
            print(f"{'':30} errors: {r.sample.errors}")
    harness.print_disturbance(results)
    inst_ratio = inst.rate / base.rate if base.rate else 0.0
    lic_ratio = lic.rate / base.rate if base.rate else 0.0
    print()
    print(f"/marketplace/installed throughput / baseline: {inst_ratio:.2f}x")
    print(f"/license throughput / baseline:               {lic_ratio:.2f}x")
    inst_lic = inst.rate / lic.rate if lic.rate else 0.0
    print(f"/marketplace/installed / /license:            {inst_lic:.2f}x")

    inst_ok = inst_ratio >= INSTALLED_MIN_RATIO and inst.p(95) <= INSTALLED_MAX_P95_MS
    harness.record_results(results, base)
    harness.record_value("raw ES256 jwt.decode, median", raw_us, "us")
    checks = [
        (f"verify median <= {TARGET_VERIFY_US:.0f} us", verify_ok, f"{verify_us:.1f} us"),
        (
            f"/marketplace/installed >= {INSTALLED_MIN_RATIO}x baseline and p95 <= "
            f"{INSTALLED_MAX_P95_MS:.0f} ms (the /license target)",
            inst_ok,
            f"{inst_ratio:.2f}x, p95 {inst.p(95):.2f} ms",
        ),
    ]
    return harness.print_targets(checks, [r.name for r in results if r.sample.failed])


# --- main -----------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=20_000, help="tokens verified")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per scenario")
    parser.add_argument("--warmup", type=float, default=3.0, help="warm-up seconds per scenario")
    parser.add_argument("--connections", type=int, default=32, help="concurrent connections")
    parser.add_argument(
        "--keep-data", action="store_true", help="keep the temporary data dir and server logs"
    )
    args = parser.parse_args(argv)
    if args.tokens < 1 or args.seconds <= 0 or args.warmup < 0:
        parser.error("need --tokens >= 1, --seconds > 0 and --warmup >= 0")
    if not 1 <= args.connections <= 1024:
        parser.error("need 1 <= --connections <= 1024")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if not harness.SERVER_CLI.exists():
        raise SystemExit(f"{harness.SERVER_CLI} not found: run with the project's venv python")
    work, data_dir, env, password = harness.prepare_run("marketplace", "tgflow-bench-market-")
    key = ec.generate_private_key(ec.SECP256R1())
    servers: list[harness.Server] = []
    try:
        print(f"data dir {work}\nseeding plan, user, backend and apps ...", flush=True)
        harness.seed(data_dir, password, env)
        backend_id, admin_token = create_marketplace(work, data_dir, env, key)
        bare, real = harness.start_servers(work, data_dir, env, "sync", servers)
        user_token = license_and_install(real, backend_id, admin_token, env, data_dir)
        license_token = harness.login(real, password)
        print(f"verifying {args.tokens} app tokens ...", flush=True)
        verifies, raws = measure_verifier(real, backend_id, key, args.tokens)
        print(f"measuring at {args.connections} connections:", flush=True)
        results = harness.run_loop(measure_http(bare, real, license_token, user_token, args))
    finally:
        for server in servers:
            server.stop()
        if args.keep_data:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0 if print_report(verifies, raws, results) else 1


#: A smoke run's arguments (``bench/run.py --quick``).
QUICK = ["--tokens", "50", "--seconds", "0.3", "--warmup", "0", "--connections", "2"]


def run(quick: bool) -> harness.BenchRun:
    """bench/run.py's entry: the full run (the defaults) or a smoke run."""
    return harness.collect(main, QUICK if quick else [])


if __name__ == "__main__":
    sys.exit(main())
