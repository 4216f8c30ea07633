"""Driving the audit log in tests: entries appended, the CLI's verify run and read."""

from __future__ import annotations

import pytest
from alembic.config import Config
from sqlalchemy import text

from server_stub.cli import main as cli_main
from tests.helpers.backend import Backend


def fill(backend: Backend, count: int = 6) -> None:
    for n in range(count):
        backend.services.audit.append("test", "thing.touch", f"things/{n}", {"n": n, "é": "ü"})


def run_verify(backend: Backend, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """``tgflow-server audit verify`` on ``backend``'s data dir: exit status, stdout+stderr."""
    code = cli_main(["audit", "verify", "--data-dir", str(backend.settings.data_dir)])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def sql(backend: Backend, statement: str, **params: object) -> None:
    """One statement straight on the database (what a tamperer with write access does)."""
    with backend.services.ctx.engine.begin() as conn:
        conn.execute(text(statement), params)


def alembic_config(conn: object) -> Config:
    """Alembic run on ``conn`` (a migration test steps the schema up and down itself)."""
    cfg = Config()
    cfg.set_main_option("script_location", "server_stub:migrations")
    cfg.attributes["connection"] = conn
    return cfg
