"""Can Qt open a window here? Decide before Qt is imported, because Qt aborts the process
(SIGABRT) when its platform plugin cannot load.

On Linux with X11, the wheel's ``libqxcb.so`` needs system libraries that a fresh machine often
lacks (``libxcb-cursor0``, ``libxcb-icccm4``, ``libxcb-keysyms1`` …). ``ldd`` of the plugin names
the missing ones; :func:`decide` turns that into a plan: use xcb, install the Debian packages
first (as root, or with sudo), or draw off screen and print the command that would fix it.
Nothing here imports Qt; the only probe that does runs in a child process.

``python -m app.qt_platform [--install]`` (what ``./dev demo`` runs) prints the platform to use
(``xcb``, ``offscreen``, or nothing for Qt's own choice) on stdout and its reasons on stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import shlex
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

#: Debian/Ubuntu package of each shared library the xcb plugin (and Qt under it) links against.
DEBIAN_PACKAGES: Mapping[str, str] = {
    "libxcb-cursor.so.0": "libxcb-cursor0",
    "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxcb-image.so.0": "libxcb-image0",
    "libxcb-randr.so.0": "libxcb-randr0",
    "libxcb-render-util.so.0": "libxcb-render-util0",
    "libxcb-render.so.0": "libxcb-render0",
    "libxcb-shape.so.0": "libxcb-shape0",
    "libxcb-shm.so.0": "libxcb-shm0",
    "libxcb-sync.so.1": "libxcb-sync1",
    "libxcb-util.so.1": "libxcb-util1",
    "libxcb-xfixes.so.0": "libxcb-xfixes0",
    "libxcb-xinerama.so.0": "libxcb-xinerama0",
    "libxcb-xinput.so.0": "libxcb-xinput0",
    "libxcb-xkb.so.1": "libxcb-xkb1",
    "libxcb.so.1": "libxcb1",
    "libX11-xcb.so.1": "libx11-xcb1",
    "libX11.so.6": "libx11-6",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
    "libxkbcommon.so.0": "libxkbcommon0",
    "libEGL.so.1": "libegl1",
    "libGL.so.1": "libgl1",
    "libOpenGL.so.0": "libopengl0",
    "libfontconfig.so.1": "libfontconfig1",
    "libfreetype.so.6": "libfreetype6",
    "libdbus-1.so.3": "libdbus-1-3",
    "libglib-2.0.so.0": "libglib2.0-0",
    "libgthread-2.0.so.0": "libglib2.0-0",
    "libSM.so.6": "libsm6",
    "libICE.so.6": "libice6",
}

XCB = "xcb"
OFFSCREEN = "offscreen"


@dataclass(frozen=True)
class PlatformPlan:
    """What to do before Qt starts.

    ``platform`` is the QT_QPA_PLATFORM to use (``""``: leave Qt's own choice). ``install`` is
    the command to run first (empty: nothing to install). ``command`` is what the user should
    run when the program cannot do it itself; ``reason`` says why in one sentence.
    """

    platform: str
    install: tuple[str, ...] = ()
    command: str = ""
    reason: str = ""


def xcb_plugin(package_dir: Path | None = None) -> Path | None:
    """The wheel's ``libqxcb.so``, found without importing Qt; ``None`` when there is none."""
    if package_dir is None:
        spec = importlib.util.find_spec("PyQt6")
        if spec is None or not spec.submodule_search_locations:
            return None
        package_dir = Path(next(iter(spec.submodule_search_locations)))
    plugin = package_dir / "Qt6" / "plugins" / "platforms" / "libqxcb.so"
    return plugin if plugin.is_file() else None


def missing_libraries(ldd_output: str) -> list[str]:
    """The sonames ``ldd`` reports as ``not found``, each once, in order."""
    missing: list[str] = []
    for line in ldd_output.splitlines():
        name, sep, where = line.strip().partition("=>")
        if sep and where.strip() == "not found" and name.strip() not in missing:
            missing.append(name.strip())
    return missing


def packages_for(sonames: Sequence[str]) -> tuple[list[str], list[str]]:
    """Debian packages for these sonames, and the sonames with no known package."""
    packages: list[str] = []
    unknown: list[str] = []
    for soname in sonames:
        package = DEBIAN_PACKAGES.get(soname)
        if package is None:
            unknown.append(soname)
        elif package not in packages:
            packages.append(package)
    return packages, unknown


def decide(
    *,
    linux: bool,
    requested: str,
    display: bool,
    missing: Sequence[str],
    is_root: bool,
    has_sudo: bool,
    has_apt: bool,
    x_answers: bool = True,
) -> PlatformPlan:
    """The plan for this machine. Pure: every fact about the machine is an argument."""
    if requested or not linux:
        return PlatformPlan(requested)  # the user chose, or Qt's platform needs no system libs
    if not display:
        return PlatformPlan(OFFSCREEN, reason="no display to open a window on")
    if not missing:
        if not x_answers:  # a stale DISPLAY (an old SSH or tmux session): Qt would abort
            return PlatformPlan(OFFSCREEN, reason="no X server answers on this DISPLAY")
        return PlatformPlan(XCB)
    packages, unknown = packages_for(missing)
    names = ", ".join(missing)
    if not has_apt or not packages:
        return PlatformPlan(
            OFFSCREEN,
            command="install the packages that provide: " + names + " (README: System packages)",
            reason=f"Qt's xcb plugin cannot load: {names} not found",
        )
    apt = ("apt-get", "install", "-y", "--no-install-recommends", *packages)
    shown = shlex.join(("sudo", *apt) if not is_root else apt)
    if unknown:
        shown += "  # and whatever provides " + ", ".join(unknown)
    reason = f"Qt's xcb plugin cannot load: {names} not found"
    if is_root or has_sudo:
        install = apt if is_root else ("sudo", *apt)
        return PlatformPlan(XCB, install=install, command=shown, reason=reason)
    return PlatformPlan(
        OFFSCREEN, command=shown, reason=reason + ", and neither root nor sudo can install them"
    )


Runner = Callable[..., "subprocess.CompletedProcess[str]"]


def ldd_missing(plugin: Path, run: Runner = subprocess.run) -> list[str]:
    """The plugin's missing libraries; ``[]`` when ``ldd`` is absent (nothing to say)."""
    try:
        done = run(["ldd", str(plugin)], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return []
    return missing_libraries(done.stdout)


def plan_here(env: Mapping[str, str] | None = None, run: Runner = subprocess.run) -> PlatformPlan:
    """:func:`decide` with this machine's facts (``ldd`` takes ~20 ms; nothing is installed)."""
    env = os.environ if env is None else env
    linux = sys.platform.startswith("linux")
    requested = env.get("QT_QPA_PLATFORM", "")
    x_display = env.get("DISPLAY", "")
    if linux and not requested and not x_display and env.get("WAYLAND_DISPLAY"):
        # Wayland alone: Qt's wayland plugin, whose needs are the compositor's. Qt chooses.
        return PlatformPlan("")
    missing: list[str] = []
    x_answers = True
    if linux and not requested and x_display:
        plugin = xcb_plugin()
        if plugin is not None:
            missing = ldd_missing(plugin, run)
        x_answers = x_server_answers(x_display)
    return decide(
        linux=linux,
        requested=requested,
        display=bool(x_display),
        missing=missing,
        is_root=linux and os.geteuid() == 0,
        has_sudo=shutil.which("sudo") is not None,
        has_apt=shutil.which("apt-get") is not None,
        x_answers=x_answers,
    )


def x_server_answers(display: str, timeout: float = 2.0) -> bool:
    """Whether something accepts a connection where ``DISPLAY`` points (no X handshake: a
    refused or missing socket is what makes Qt abort). Forms it cannot read count as yes."""
    host, sep, rest = display.rpartition(":")
    number = rest.split(".", 1)[0]
    if not sep or not number.isdigit() or host.startswith("/"):
        return True
    try:
        if host in ("", "unix"):
            path = f"/tmp/.X11-unix/X{number}"  # noqa: S108 - X11's fixed socket, only connected to
            # Linux X servers listen on the abstract socket too; try it, then the file.
            for address in ("\0" + path, path):
                with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as sock:
                    sock.settimeout(timeout)
                    sock.connect(address)
                    return True
            return False
        with socket.create_connection((host, 6000 + int(number)), timeout=timeout):
            return True
    except OSError:
        return False


def unusable_display(env: Mapping[str, str] | None = None) -> str | None:
    """Why Qt's xcb plugin cannot load on this display, with the fix; ``None`` when it can
    (or when the user chose a platform, or there is no display: that is said elsewhere)."""
    env = os.environ if env is None else env
    plan = plan_here(env)
    if plan.reason and (plan.install or (plan.platform == OFFSCREEN and env.get("DISPLAY"))):
        return plan.reason + (f". To fix it: {plan.command}" if plan.command else "")
    return None


_PROBE = (
    "import sys\n"
    "from PyQt6.QtGui import QGuiApplication\n"
    "app = QGuiApplication(sys.argv[:1])\n"
    "print(QGuiApplication.platformName())\n"
)


#: ``tgflow``'s hidden option that runs :func:`print_platform` (a frozen program has no ``-c``).
PROBE_OPTION = "--qt-probe"


def print_platform() -> int:
    """What the probe's child does: start Qt, print the platform that loaded."""
    from PyQt6.QtGui import QGuiApplication

    app = QGuiApplication(sys.argv[:1])
    print(QGuiApplication.platformName(), flush=True)
    del app
    return 0


def probe_command(*, frozen: bool | None = None) -> list[str]:
    """The child process of :func:`probe`: the interpreter with a snippet, or in a PyInstaller
    build (whose ``sys.executable`` is ``tgflow`` itself) the program's hidden option."""
    if frozen is None:
        frozen = bool(getattr(sys, "frozen", False))
    return [sys.executable, PROBE_OPTION] if frozen else [sys.executable, "-c", _PROBE]


def probe(platform: str, run: Runner = subprocess.run) -> tuple[str, str]:
    """Start Qt in a child process on ``platform``: (the platform that loaded or "", why not)."""
    env = {**os.environ, "QT_QPA_PLATFORM": platform}
    try:
        done = run(probe_command(), capture_output=True, text=True, env=env, timeout=60)
    except (OSError, subprocess.SubprocessError) as exc:
        return "", str(exc)
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        return "", " ".join(lines[-2:]) or f"exit status {done.returncode}"
    return done.stdout.strip(), ""


def prepare(*, install: bool, run: Runner = subprocess.run, say: Callable[[str], None]) -> str:
    """Install what is missing when allowed and possible; the platform to start Qt with."""
    plan = plan_here(run=run)
    if plan.install:
        if not install:
            plan = PlatformPlan(OFFSCREEN, command=plan.command, reason=plan.reason)
        else:
            say(f"{plan.reason}; installing them: {plan.command}")
            if not _run_install(plan.install, run):
                say(f"the installation did not succeed; run it yourself: {plan.command}")
                return OFFSCREEN
            plan = plan_here(run=run)
    if plan.platform == OFFSCREEN and os.environ.get("DISPLAY"):
        fix = f"; to fix it: {plan.command}" if plan.command else ""
        say(f"{plan.reason} (DISPLAY={os.environ['DISPLAY']}){fix}; drawing off screen instead")
    if plan.platform == XCB:
        loaded, why = probe(XCB, run)
        if loaded != XCB:
            say(f"Qt could not open the display ({why or loaded}); drawing off screen instead")
            return OFFSCREEN
    return plan.platform


def _run_install(command: Sequence[str], run: Runner) -> bool:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    prefix = list(command[: list(command).index("apt-get")])  # "sudo" or nothing
    try:
        # apt talks on stderr: stdout carries only the platform's name (./dev reads it).
        updated = run(
            [*prefix, "apt-get", "update", "-qq"],
            env=env,
            stdout=sys.stderr,
            text=True,
            timeout=600,
        )
        if updated.returncode != 0:
            return False
        done = run(list(command), env=env, stdout=sys.stderr, text=True, timeout=1200)
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.qt_platform", description=__doc__)
    parser.add_argument(
        "--install", action="store_true", help="install missing system libraries (apt)"
    )
    args = parser.parse_args(argv)
    platform = prepare(
        install=args.install, say=lambda text: print(f"tgflow: {text}", file=sys.stderr)
    )
    print(platform)
    return 0


if __name__ == "__main__":
    sys.exit(main())
