"""`tgflow-server`: the demo, operator commands, and clear errors for bad input."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from server_stub.cli import main as cli_main
from tests.helpers.api import fingerprint


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _wait_healthy(url: str, proc: subprocess.Popen[str], deadline_s: float = 60) -> None:
    # Readiness of another process: a bounded poll, not a sleep standing in for an event.
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(
                f"server exited early: {proc.stdout.read() if proc.stdout else ''}"
            )
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError("server did not become healthy")


def test_demo_seeds_prints_and_serves(tmp_path: Path) -> None:
    """The README's first command, end to end: credentials and pins printed, login works."""
    port = _free_port()
    env = {**os.environ, "TGFLOW_LOG_LEVEL": "WARNING", "PYTHONUNBUFFERED": "1"}
    env.pop("TGFLOW_DATABASE_URL", None)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "server_stub",
            "demo",
            "--port",
            str(port),
            "--data-dir",
            str(tmp_path / "demo"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        lines: list[str] = []
        while not lines or ("reference backend on" not in lines[-1] and lines[-1]):
            lines.append(proc.stdout.readline())
        text = "".join(lines)
        email = re.search(r"Demo user:\s+(\S+)", text)
        password = re.search(r"Password:\s+(\S+)", text)
        assert email and password, text
        assert re.search(r"auth\s+RS256\s+\S+\s+sha256/[A-Za-z0-9_-]{43}", text), text
        assert f"http://127.0.0.1:{port}" in text
        url = f"http://127.0.0.1:{port}"
        _wait_healthy(url, proc)
        r = httpx.post(
            url + "/auth/login",
            json={"email": email[1], "password": password[1], "device_fingerprint": fingerprint()},
        )
        assert r.status_code == 200, r.text
        lic = httpx.get(url + "/license", headers={"Authorization": f"Bearer {r.json()['token']}"})
        assert lic.json()["plan"] == "demo"
        assert lic.json()["quota"]["limit"] == 1000
        assert lic.json()["device_binding"]["devices_max"] == 2
    finally:
        proc.terminate()
        proc.wait(30)


def test_demo_twice_resets_the_password(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = str(tmp_path / "d")
    assert cli_main(["demo", "--no-run", "--data-dir", data]) == 0
    first = capsys.readouterr().out
    assert cli_main(["demo", "--no-run", "--data-dir", data]) == 0
    second = capsys.readouterr().out
    pw = re.compile(r"Password:\s+(\S+)")
    assert pw.search(first)[1] != pw.search(second)[1]  # type: ignore[index]
    assert cli_main(["plans", "list", "--data-dir", data]) == 0
    plans = capsys.readouterr().out
    assert re.search(r"^demo\s+1000 msg/month\s+2 devices", plans, re.M), plans


def test_plans_and_users(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = str(tmp_path / "d")
    assert (
        cli_main(
            [
                "plans",
                "create",
                "--name",
                "pro",
                "--quota",
                "5000",
                "--max-devices",
                "3",
                "--features",
                "broadcast,scheduler",
                "--data-dir",
                data,
            ]
        )
        == 0
    )
    assert "pro: 5000 messages/month, 3 devices" in capsys.readouterr().out
    assert cli_main(["plans", "create", "--name", "pro", "--quota", "1", "--data-dir", data]) == 2
    assert "already exists" in capsys.readouterr().err
    assert (
        cli_main(["users", "create", "eve@example.com", "--plan", "pro", "--data-dir", data]) == 0
    )
    out = capsys.readouterr().out
    assert "on plan pro" in out and re.search(r"password: \S{12,}", out)
    assert cli_main(["users", "create", "x@example.com", "--plan", "nope", "--data-dir", data]) == 2
    assert "no plan named 'nope'" in capsys.readouterr().err
    assert (
        cli_main(["users", "create", "x@example.com", "--password", "short", "--data-dir", data])
        == 2
    )
    assert "at least 8" in capsys.readouterr().err
    assert cli_main(["db", "upgrade", "--data-dir", data]) == 0


def test_unwritable_data_dir_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    assert cli_main(["keys", "rotate", "--data-dir", str(blocker / "data")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tgflow-server: error: the data dir") and "not writable" in err
    assert "Traceback" not in err


def test_unreachable_database_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TGFLOW_DATABASE_URL", "postgresql://postgres@127.0.0.1:1/nowhere")
    assert cli_main(["db", "upgrade", "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "cannot reach the database" in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "--port", "70000"], "not a TCP port"),
        (["run", "--workers", "many"], "not a whole number"),
        (["plans", "create", "--name", "x"], "needs --name and --quota"),
        (["keys", "destroy"], "invalid choice"),
        ([], "required"),
    ],
)
def test_bad_arguments(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli_main(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


_PIN_LINE = re.compile(
    r"^jwt_public_key_fingerprint = (sha256/[A-Za-z0-9_-]{43}),(sha256/[A-Za-z0-9_-]{43})$", re.M
)


def test_demo_and_keys_pins_print_the_same_settings_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = str(tmp_path / "d")
    assert cli_main(["demo", "--no-run", "--data-dir", data]) == 0
    demo_line = _PIN_LINE.search(capsys.readouterr().out)
    assert cli_main(["keys", "pins", "--data-dir", data]) == 0
    pins_out = capsys.readouterr().out
    pins_line = _PIN_LINE.search(pins_out)
    assert demo_line and pins_line, pins_out
    assert demo_line[0] == pins_line[0]
    # The pasted pins are the auth key's (the desktop's tokens and leases) and the license
    # key's (license files and the release manifest of the update notice).
    auth = re.search(r"^\s*auth\s+RS256\s+\S+\s+(sha256/\S+)$", pins_out, re.M)
    assert auth and auth[1] == pins_line[1]
    license_pin = re.search(r"^\s*license\s+ES256\s+\S+\s+(sha256/\S+)$", pins_out, re.M)
    assert license_pin and license_pin[1] == pins_line[2]


READ_ONLY = [
    ["keys", "pins"],
    ["keys", "list"],
    ["plans", "list"],
    ["marketplace", "apps"],
    ["marketplace", "audit"],
]


@pytest.mark.parametrize("argv", READ_ONLY, ids=" ".join)
def test_read_only_commands_create_no_data_dir(
    argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "never-used"
    assert cli_main([*argv, "--data-dir", str(missing)]) == 2
    err = capsys.readouterr().err
    assert f"no data dir {missing}" in err and "--data-dir" in err
    assert not missing.exists()


@pytest.mark.parametrize("argv", READ_ONLY, ids=" ".join)
def test_read_only_commands_create_no_keys_and_no_database(
    argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli_main([*argv, "--data-dir", str(empty)]) == 2
    err = capsys.readouterr().err
    assert "no signing keys" in err or "no database" in err
    assert "tgflow-server run" in err and "Traceback" not in err
    assert list(empty.iterdir()) == []


@pytest.mark.parametrize("argv", READ_ONLY, ids=" ".join)
def test_read_only_commands_work_on_a_used_data_dir(
    argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "d"
    assert cli_main(["demo", "--no-run", "--data-dir", str(data)]) == 0
    before = sorted(p.name for p in (data / "keys").iterdir())
    capsys.readouterr()
    assert cli_main([*argv, "--data-dir", str(data)]) == 0, capsys.readouterr().err
    assert sorted(p.name for p in (data / "keys").iterdir()) == before
