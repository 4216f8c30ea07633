"""Build the desktop program with PyInstaller (``build/tgflow.spec``) and archive it.

    python build/build.py [--dist DIR] [--work DIR]

The onedir bundle lands in ``DIR/tgflow/`` (default ``build/dist``); on Linux it is then packed
as ``DIR/tgflow-{version}-linux-x86_64.tar.gz`` (the name build/release.py checksums). The
version is the project's (pyproject.toml's, static or setuptools-dynamic). Prints the bundle's
size (its regular files, MB = 10^6 bytes) against the target. Exit status: PyInstaller's, or 1
when a file the program needs is missing from the bundle.
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SPEC = HERE / "tgflow.spec"
#: The Linux bundle's size target (issue #14); a bundle over it still builds, and says so.
TARGET_MB = 120
#: One PyInstaller build at a time on a shared machine: they would fight over 2 cores.
LOCK = Path(tempfile.gettempdir()) / "tgflow-pyinstaller.lock"

sys.path.insert(0, str(HERE))
import bundle_rules  # noqa: E402
from tgflow_version import project_version  # noqa: E402


def platform_tag() -> str:
    """``linux-x86_64``, ``windows-amd64``, ``macos-arm64`` …: the archive name's part."""
    systems = {"linux": "linux", "win32": "windows", "darwin": "macos"}
    return f"{systems.get(sys.platform, sys.platform)}-{platform.machine().lower()}"


def archive_name(version: str, tag: str) -> str:
    return f"tgflow-{version}-{tag}.tar.gz"


def tree_size(path: Path) -> int:
    """Bytes of the regular files under ``path`` (symlinks not followed, not counted twice)."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def missing_files(bundle: Path) -> list[str]:
    """bundle_rules.REQUIRED_IN_BUNDLE that are not in ``bundle``'s ``_internal/``."""
    internal = bundle / "_internal"
    wanted = bundle_rules.REQUIRED_IN_BUNDLE
    if sys.platform != "linux":  # the X11 plugins and libraries are Linux's
        linux = set(bundle_rules.LINUX_SYSTEM_LIBRARIES)
        wanted = tuple(w for w in wanted if "/platforms/libq" not in w and w not in linux)
    return [w for w in wanted if not (internal / w).exists()]


def make_archive(bundle: Path, target: Path) -> Path:
    """``bundle`` as ``target`` (tar.gz), its top directory ``tgflow/``; symlinks kept."""
    partial = target.with_name(target.name + ".partial")
    with tarfile.open(partial, "w:gz", compresslevel=6) as tar:
        tar.add(bundle, arcname=bundle.name)
    partial.replace(target)
    return target


@contextmanager
def build_lock() -> Iterator[None]:
    try:
        import fcntl
    except ImportError:  # Windows: a build machine of its own
        yield
        return
    with LOCK.open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"build.py: another PyInstaller build holds {LOCK}; waiting for it", flush=True)
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def run_pyinstaller(dist: Path, work: Path) -> int:
    command = [
        sys.executable,
        "-m",
        "PyInstaller",
        "--noconfirm",
        "--clean",
        "--log-level",
        "WARN",
        "--distpath",
        str(dist),
        "--workpath",
        str(work),
        str(SPEC),
    ]
    print("build.py:", " ".join(command), flush=True)
    return subprocess.run(command, cwd=ROOT, check=False).returncode  # noqa: S603


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="build.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dist", type=Path, default=HERE / "dist", help="output directory")
    parser.add_argument("--work", type=Path, default=HERE / "work", help="PyInstaller's scratch")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    dist, work = args.dist.resolve(), args.work.resolve()
    dist.mkdir(parents=True, exist_ok=True)
    with build_lock():
        code = run_pyinstaller(dist, work)
    if code != 0:
        print(f"build.py: PyInstaller failed (exit {code})", file=sys.stderr)
        return code
    bundle = dist / "tgflow"
    missing = missing_files(bundle)
    if missing:
        print(f"build.py: the bundle lacks {', '.join(missing)}", file=sys.stderr)
        return 1
    size_mb = tree_size(bundle) / 1e6
    verdict = "within" if size_mb <= TARGET_MB else "OVER"
    print(f"build.py: bundle {bundle}: {size_mb:.1f} MB ({verdict} the {TARGET_MB} MB target)")
    if sys.platform == "linux":
        archive = make_archive(bundle, dist / archive_name(project_version(), platform_tag()))
        print(f"build.py: archive {archive}: {archive.stat().st_size / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
