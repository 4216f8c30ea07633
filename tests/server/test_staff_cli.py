"""``tgflow-server staff create|list|disable|reset-2fa``: the CLI acts as an Admin, audited."""

from __future__ import annotations

import re

import pytest

from server_stub.cli import main as cli_main
from server_stub.cli_staff import cli_actor
from server_stub.services.staff import Role
from tests.helpers.api import assert_problem
from tests.helpers.backend import Backend, BackendFactory
from tests.helpers.staff import STAFF_PASSWORD, login, new_staff


@pytest.fixture
def live(make_backend: BackendFactory, monkeypatch: pytest.MonkeyPatch) -> Backend:
    backend = make_backend()
    monkeypatch.setenv("TGFLOW_DATABASE_URL", backend.database_url)
    monkeypatch.setenv("TGFLOW_LOG_LEVEL", "WARNING")
    return backend


def run(live: Backend, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = cli_main(["staff", *argv, "--data-dir", str(live.settings.data_dir)])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_the_cli_manages_staff_and_is_audited(
    live: Backend, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = run(live, capsys, "create", "--email", "Boss@Staff.Example", "--role", "admin")
    assert code == 0, out
    assert "role admin" in out and "must enrol TOTP" in out
    password = re.search(r"^password: (\S+)$", out, re.M)
    assert password is not None
    r = live.client.post(
        "/staff/login", json={"email": "boss@staff.example", "password": password[1]}
    )
    assert r.status_code == 200 and r.json()["second_factor"] == "enrol_required"

    given = ("--password", STAFF_PASSWORD)
    code, out = run(
        live, capsys, "create", "--email", "s@staff.example", "--role", "support", *given
    )
    assert code == 0 and "password:" not in out and "TOTP" not in out, out
    code, out = run(live, capsys, "create", "--email", "s@staff.example", "--role", "audit")
    assert code == 2 and "already exists" in out
    short = ("--password", "short")
    code, out = run(live, capsys, "create", "--email", "x@staff.example", "--role", "audit", *short)
    assert code == 2 and "at least 10" in out

    code, out = run(live, capsys, "list")
    assert code == 0
    assert re.search(r"boss@staff\.example\s+admin\s+active\s+no-totp", out), out
    assert re.search(r"s@staff\.example\s+support\s+active", out), out

    sales = new_staff(live.client, live.services, live.clock, Role.SALES)
    code, out = run(live, capsys, "reset-2fa", sales.email)
    assert code == 0 and "cleared" in out
    assert_problem(live.client.get("/staff/me", headers=sales.headers), 401, "token_invalid")
    assert login(live.client, sales.email).json()["second_factor"] == "enrol_required"

    code, out = run(live, capsys, "disable", "s@staff.example")
    assert code == 0 and "disabled" in out
    assert_problem(login(live.client, "s@staff.example"), 403, "forbidden")
    code, out = run(live, capsys, "disable", "nobody@staff.example")
    assert code == 2 and "no such staff account" in out

    actions = [
        (e.action, e.object.split("/")[0])
        for e in live.services.audit.search(actor=cli_actor()).entries
    ]
    assert actions == [
        ("staff.disable", "staff"),
        ("staff.reset_2fa", "staff"),
        ("staff.create", "staff"),
        ("staff.create", "staff"),
    ]


def test_the_cli_refuses_incomplete_commands(
    live: Backend, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        run(live, capsys, "create", "--email", "a@staff.example")
    assert exited.value.code == 2
    assert "needs --email and --role" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        run(live, capsys, "disable")
    assert "needs the staff id or e-mail" in capsys.readouterr().err
