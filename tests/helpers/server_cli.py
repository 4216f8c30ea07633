"""Running ``tgflow-server`` commands in process against a test backend's database."""

from __future__ import annotations

import pytest

from server_stub.cli import main as cli_main
from tests.helpers.backend import Backend


def run_cli(backend: Backend, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    """``tgflow-server *argv --data-dir <the backend's>``: the exit code and what it printed.

    The backend's database is named by ``TGFLOW_DATABASE_URL`` (the ``cli_env`` fixture).
    """
    try:
        code = cli_main([*argv, "--data-dir", str(backend.settings.data_dir)])
    except SystemExit as exc:  # argparse's refusals
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return code, captured.out + captured.err
