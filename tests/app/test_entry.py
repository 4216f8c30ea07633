"""The ``tgflow`` entry point: --demo, --self-test and bad settings, as separate processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def tgflow(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.main", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={
            **os.environ,
            "PYTHONPATH": str(REPO),
            "QT_QPA_PLATFORM": "offscreen",
            **(env or {}),
        },
        timeout=240,
    )


def test_demo_starts_its_backend_and_shows_the_main_window(tmp_path: Path) -> None:
    done = tgflow("--demo", "--data-root", str(tmp_path), env={"TGFLOW_BENCH_EXIT_WHEN_SHOWN": "1"})
    assert done.returncode == 0, done.stderr
    assert "tgflow: window shown" in done.stdout
    assert list((tmp_path / "logs").glob("session-*.html"))
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("display", "flags"),
    # No display at all; or one Qt cannot use, where ./dev demo passes --offscreen.
    [(None, ()), (":987", ("--offscreen",))],
)
def test_demo_without_a_display_signs_in_by_itself_and_draws_the_window(
    tmp_path: Path, display: str | None, flags: tuple[str, ...]
) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env.pop("QT_QPA_PLATFORM", None)
    if display is not None:
        env["DISPLAY"] = display
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.main", "--demo", "--data-root", str(tmp_path), *flags],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env={**env, "PYTHONPATH": str(REPO)},
    )
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.rstrip())
            if "press Ctrl+C" in line:
                break
    finally:
        proc.send_signal(signal.SIGTERM)  # handled like Ctrl+C: a clean exit
        _out, err = proc.communicate(timeout=60)
    text = "\n".join(lines)
    assert "demo backend at http://127.0.0.1:" in text
    assert "signed in as demo@tgflow.example" in text
    assert proc.returncode == 0, err
    if not flags:
        # One clear message: what is missing and what happens instead, no step left to take.
        assert err.count("running the demo off screen") == 1
        assert "QT_QPA_PLATFORM" not in err
    assert "Traceback" not in err
    assert (tmp_path / "logs" / "demo-window.png").stat().st_size > 1000
    assert (tmp_path / "data" / "demo" / "demo-recipients.csv").is_file()
    assert (tmp_path / "data" / "demo" / "accounts.json").is_file()


def test_self_test_passes(tmp_path: Path) -> None:
    done = tgflow("--self-test", env={"HOME": str(tmp_path)})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "self-test passed" in done.stdout
    assert "FAIL" not in done.stdout
    assert "ok   end-to-end: 20 simulated messages sent and counted once" in done.stdout
    assert "ok   pins: 2 pinned keys; a forged token and unpinned keys refused" in done.stdout


def test_bad_settings_name_the_file_the_key_and_the_reason(tmp_path: Path) -> None:
    settings = tmp_path / "settings.ini"
    settings.write_text("[flood]\nmax_consecutive_errors = many\n[broadcast]\nbatchsize = 5\n")
    done = tgflow("--config", str(settings), "--data-root", str(tmp_path / "root"))
    assert done.returncode == 2
    assert str(settings) in done.stderr
    assert "[flood] max_consecutive_errors" in done.stderr
    assert "[broadcast] batchsize" in done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout == ""


def test_a_missing_config_file_is_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.ini"
    done = tgflow("--config", str(missing), "--data-root", str(tmp_path / "root"))
    assert done.returncode == 2
    assert str(missing) in done.stderr and "does not exist" in done.stderr
    assert "Traceback" not in done.stderr


def test_live_mode_without_key_pins_refuses_to_start(tmp_path: Path) -> None:
    settings = tmp_path / "settings.ini"
    settings.write_text("[license]\napi_base_url = https://licensing.example.com\n")
    done = tgflow("--config", str(settings), "--data-root", str(tmp_path / "root"))
    assert done.returncode == 2
    assert "jwt_public_key_fingerprint" in done.stderr
    assert "Traceback" not in done.stderr
