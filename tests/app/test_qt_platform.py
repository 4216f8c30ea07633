"""Before Qt starts: which platform, what to install, and never an abort (app/qt_platform.py)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from app import qt_platform
from app.qt_platform import (
    OFFSCREEN,
    XCB,
    PlatformPlan,
    decide,
    missing_libraries,
    x_server_answers,
)

REPO = Path(__file__).resolve().parents[2]

LDD_MISSING = """\
\tlinux-vdso.so.1 (0x00007f10f6566000)
\tlibQt6XcbQpa.so.6 => /venv/PyQt6/Qt6/lib/libQt6XcbQpa.so.6 (0x00007f10f6498000)
\tlibxcb-cursor.so.0 => not found
\tlibxcb-icccm.so.4 => not found
\tlibxcb-keysyms.so.1 => not found
\tlibxcb-icccm.so.4 => not found
\tlibxcb.so.1 => /lib/x86_64-linux-gnu/libxcb.so.1 (0x00007f10f631a000)
"""
LDD_COMPLETE = "\tlibxcb.so.1 => /lib/x86_64-linux-gnu/libxcb.so.1 (0x00007f10f631a000)\n"
MISSING = ["libxcb-cursor.so.0", "libxcb-icccm.so.4", "libxcb-keysyms.so.1"]
PACKAGES = ("libxcb-cursor0", "libxcb-icccm4", "libxcb-keysyms1")


def machine(**overrides: Any) -> dict[str, Any]:
    facts: dict[str, Any] = {
        "linux": True,
        "requested": "",
        "display": True,
        "missing": MISSING,
        "is_root": False,
        "has_sudo": False,
        "has_apt": True,
    }
    facts.update(overrides)
    return facts


def test_ldd_output_names_each_missing_library_once() -> None:
    assert missing_libraries(LDD_MISSING) == MISSING
    assert missing_libraries(LDD_COMPLETE) == []


def test_all_libraries_present_uses_xcb() -> None:
    assert decide(**machine(missing=[])) == PlatformPlan(XCB)


def test_missing_libraries_as_root_are_installed_with_apt() -> None:
    plan = decide(**machine(is_root=True))
    assert plan.platform == XCB
    assert plan.install == ("apt-get", "install", "-y", "--no-install-recommends", *PACKAGES)
    assert "libxcb-icccm.so.4" in plan.reason


def test_missing_libraries_with_sudo_are_installed_through_sudo() -> None:
    plan = decide(**machine(has_sudo=True))
    assert plan.install[:2] == ("sudo", "apt-get")
    assert plan.install[-3:] == PACKAGES


def test_missing_libraries_without_root_or_sudo_fall_back_off_screen_with_the_command() -> None:
    plan = decide(**machine())
    assert plan.platform == OFFSCREEN
    assert plan.install == ()
    assert plan.command == "sudo apt-get install -y --no-install-recommends " + " ".join(PACKAGES)
    assert "neither root nor sudo" in plan.reason


def test_without_apt_the_missing_sonames_are_named() -> None:
    plan = decide(**machine(is_root=True, has_apt=False))
    assert plan.platform == OFFSCREEN and plan.install == ()
    assert "libxcb-cursor.so.0" in plan.command and "README" in plan.command


def test_a_library_without_a_known_package_is_still_named() -> None:
    plan = decide(**machine(is_root=True, missing=["libxcb-icccm.so.4", "libfoo.so.9"]))
    assert plan.install[-1] == "libxcb-icccm4"
    assert "libfoo.so.9" in plan.command


@pytest.mark.parametrize(
    ("facts", "platform"),
    [
        ({"display": False}, OFFSCREEN),
        ({"requested": "wayland"}, "wayland"),
        ({"linux": False}, ""),
    ],
)
def test_no_display_a_chosen_platform_or_another_os(facts: dict[str, Any], platform: str) -> None:
    plan = decide(**machine(**facts))
    assert plan.platform == platform
    assert plan.install == () and plan.command == ""


class FakeMachine:
    """ldd, apt-get and the probe as one fake ``subprocess.run``: installing fixes ldd."""

    def __init__(self, *, install_ok: bool) -> None:
        self.install_ok = install_ok
        self.installed = False
        self.commands: list[list[str]] = []

    def __call__(self, argv: Sequence[str], **_kwargs: Any) -> subprocess.CompletedProcess[str]:
        argv = list(argv)
        self.commands.append(argv)
        if argv[0] == "ldd":
            out = LDD_COMPLETE if self.installed else LDD_MISSING
            return subprocess.CompletedProcess(argv, 0, out, "")
        if "apt-get" in argv:
            if "install" in argv and self.install_ok:
                self.installed = True
            code = 0 if self.install_ok or "update" in argv else 100
            return subprocess.CompletedProcess(argv, code, "", "")
        # the probe: a child process starting Qt
        return subprocess.CompletedProcess(argv, 0, "xcb\n", "")


@pytest.fixture
def root_with_a_display(monkeypatch: pytest.MonkeyPatch) -> None:
    if not sys.platform.startswith("linux"):
        pytest.skip("the xcb plugin is Linux's")
    monkeypatch.setenv("DISPLAY", ":0")
    monkeypatch.delenv("QT_QPA_PLATFORM", raising=False)
    monkeypatch.setattr(qt_platform.os, "geteuid", lambda: 0)
    monkeypatch.setattr(qt_platform.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(qt_platform, "x_server_answers", lambda _display: True)


@pytest.mark.usefixtures("root_with_a_display")
def test_prepare_installs_then_checks_again_and_uses_xcb() -> None:
    fake = FakeMachine(install_ok=True)
    said: list[str] = []
    assert qt_platform.prepare(install=True, run=fake, say=said.append) == XCB
    assert ["apt-get", "update", "-qq"] in fake.commands
    assert ["apt-get", "install", "-y", "--no-install-recommends", *PACKAGES] in fake.commands
    assert [c[0] for c in fake.commands].count("ldd") == 2  # checked again after installing
    assert "installing them" in said[0]


@pytest.mark.usefixtures("root_with_a_display")
def test_a_failed_install_prints_the_command_and_falls_back_off_screen() -> None:
    fake = FakeMachine(install_ok=False)
    said: list[str] = []
    assert qt_platform.prepare(install=True, run=fake, say=said.append) == OFFSCREEN
    assert "run it yourself: apt-get install -y" in said[-1]


@pytest.mark.usefixtures("root_with_a_display")
def test_without_install_permission_nothing_is_installed() -> None:
    fake = FakeMachine(install_ok=True)
    said: list[str] = []
    assert qt_platform.prepare(install=False, run=fake, say=said.append) == OFFSCREEN
    assert not any("apt-get" in c for c in fake.commands)
    assert "to fix it: apt-get install" in said[-1]


@pytest.mark.usefixtures("root_with_a_display")
def test_a_probe_that_fails_falls_back_off_screen(monkeypatch: pytest.MonkeyPatch) -> None:
    def run(argv: Sequence[str], **_kwargs: Any) -> subprocess.CompletedProcess[str]:
        if argv[0] == "ldd":
            return subprocess.CompletedProcess(list(argv), 0, LDD_COMPLETE, "")
        return subprocess.CompletedProcess(list(argv), -6, "", 'could not connect to display ":0"')

    said: list[str] = []
    assert qt_platform.prepare(install=True, run=run, say=said.append) == OFFSCREEN
    assert "could not connect to display" in said[-1]


def _without_a_usable_display() -> dict[str, str]:
    """A DISPLAY nothing listens on: whatever this machine has installed, xcb cannot start."""
    env = {k: v for k, v in os.environ.items() if k not in ("WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    return {**env, "DISPLAY": ":987", "PYTHONPATH": str(REPO)}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="X11 is Linux's here")
def test_self_test_reports_the_platform_that_really_loaded() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "app.main", "--self-test"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=_without_a_usable_display(),
        timeout=240,
    )
    assert done.returncode == 1, done.stderr  # a FAIL line, not SIGABRT (-6)
    assert "FAIL display: RuntimeError: no window can open on this display" in done.stdout
    assert "ok   qt: Qt platform offscreen" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="X11 is Linux's here")
def test_the_module_prints_offscreen_when_the_display_cannot_be_used() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "app.qt_platform"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=_without_a_usable_display(),
        timeout=120,
    )
    assert done.returncode == 0
    assert done.stdout.strip() == OFFSCREEN
    assert done.stderr.startswith("tgflow: ")


def test_a_display_nobody_answers_on_falls_back_off_screen() -> None:
    plan = decide(**machine(missing=[], x_answers=False))
    assert plan.platform == OFFSCREEN and "no X server" in plan.reason


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="abstract sockets are Linux's")
def test_x_server_answers_only_where_something_listens() -> None:
    number = 4000 + os.getpid() % 1000
    assert not x_server_answers(f":{number}")
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(f"\0/tmp/.X11-unix/X{number}")  # abstract: nothing on disk
        server.listen(1)
        assert x_server_answers(f":{number}")
        assert x_server_answers(f":{number}.0")
    assert x_server_answers("not a display")  # unreadable forms are not refused


def test_a_chosen_platform_is_never_a_display_problem() -> None:
    # ./dev demo passes --offscreen with DISPLAY still set: nothing to report then.
    assert qt_platform.unusable_display({"DISPLAY": ":987", "QT_QPA_PLATFORM": "offscreen"}) is None


@pytest.mark.parametrize("demo", [True, False])
def test_no_display_is_one_message_with_one_course(
    monkeypatch: pytest.MonkeyPatch, demo: bool
) -> None:
    from app.main import display_problem

    for name in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(sys, "platform", "linux")
    message = display_problem(demo=demo)
    assert message is not None and message.startswith("no display to open a window on")
    # The demo is already going off screen: no advice to set it up by hand.
    assert "QT_QPA_PLATFORM" not in message
    assert ("running the demo off screen" in message) == demo


def test_a_frozen_build_probes_through_its_own_hidden_option() -> None:
    # A PyInstaller build's sys.executable is tgflow itself: it has no -c.
    assert qt_platform.probe_command(frozen=True) == [sys.executable, qt_platform.PROBE_OPTION]
    assert qt_platform.probe_command(frozen=False)[1] == "-c"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the offscreen check is Linux's")
def test_the_hidden_probe_option_prints_the_platform_that_loaded() -> None:
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-m", "app.main", qt_platform.PROBE_OPTION],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "offscreen"
