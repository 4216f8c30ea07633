"""What a benchmark runs on: its work dir and environment, the user and plan it seeds through the
``tgflow-server`` CLI, a login, and a throwaway PostgreSQL database."""

from __future__ import annotations

import contextlib
import io
import os
import platform
import secrets
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx

from bench.harness.servers import Server

EMAIL = "bench@example.com"
PLAN = "bench"
FINGERPRINT = "bench-device:0000000000000001"


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
