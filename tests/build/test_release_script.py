"""build/release.py (docs/updates.md): runs the build, checksums every archive of the version,
writes the manifest the server publishes (and SHA256SUMS); refuses an empty dist."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from agent.protocol import ReleaseManifest
from server_stub.cli_release import read_manifest
from tests.helpers.build_scripts import load

ROOT = Path(__file__).resolve().parent.parent.parent
SCRIPT = ROOT / "build" / "release.py"


@pytest.fixture
def release() -> ModuleType:
    return load("release")


def test_checksums_every_archive_and_writes_the_manifest(
    release: ModuleType, tmp_path: Path
) -> None:
    version = release.project_version()
    dist = tmp_path / "dist"
    dist.mkdir()
    tar = dist / f"tgflow-{version}-linux-x86_64.tar.gz"
    tar.write_bytes(b"a bundle" * 1000)
    image = dist / f"tgflow-{version}-linux-x86_64.AppImage"
    image.write_bytes(b"an image")
    (dist / "tgflow-0.0.1-linux-x86_64.tar.gz").write_bytes(b"an older one")
    (dist / "tgflow-work-dir").mkdir()
    code = release.main(
        [
            "--skip-build",
            "--dist",
            str(dist),
            "--base-url",
            "https://dl.example.com/t/",
            "--released",
            "2026-12-01",
        ]
    )
    assert code == 0
    manifest = read_manifest(dist / f"release-{version}.json")
    assert isinstance(manifest, ReleaseManifest)
    assert manifest.version == version and manifest.released.isoformat() == "2026-12-01"
    by_name = {d.name: d for d in manifest.downloads}
    assert set(by_name) == {tar.name, image.name}
    entry = by_name[tar.name]
    assert entry.platform == "linux-x86_64" and entry.size == tar.stat().st_size
    assert entry.sha256 == hashlib.sha256(tar.read_bytes()).hexdigest()
    assert entry.url == f"https://dl.example.com/t/{tar.name}"
    # The notes are the CHANGELOG's section of this version.
    assert manifest.notes and manifest.notes == release.changelog_notes(version)
    assert "## [" not in manifest.notes
    sums = (dist / "SHA256SUMS").read_text(encoding="utf-8")
    assert f"{entry.sha256}  {tar.name}\n" in sums


def test_runs_the_build_first(release: ModuleType, tmp_path: Path) -> None:
    version = release.project_version()
    fake_build = tmp_path / "build.py"
    fake_build.write_text(
        "import sys, pathlib\n"
        "dist = pathlib.Path(sys.argv[sys.argv.index('--dist') + 1])\n"
        "dist.mkdir(parents=True, exist_ok=True)\n"
        f"(dist / 'tgflow-{version}-linux-x86_64.tar.gz').write_bytes(b'built')\n",
        encoding="utf-8",
    )
    dist = tmp_path / "out"
    result = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--dist",
            str(dist),
            "--base-url",
            "https://x.example/",
            "--build-script",
            str(fake_build),
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert f"tgflow-server release publish {dist / f'release-{version}.json'}" in result.stdout
    assert read_manifest(dist / f"release-{version}.json").downloads[0].size == len(b"built")


def test_refuses_a_dist_without_archives_and_a_failed_build(
    release: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert release.main(["--skip-build", "--dist", str(tmp_path), "--base-url", "https://x/"]) == 2
    assert "no tgflow-" in capsys.readouterr().err
    failing = tmp_path / "fail.py"
    failing.write_text("raise SystemExit(3)\n", encoding="utf-8")
    code = release.main(
        ["--dist", str(tmp_path), "--base-url", "https://x/", "--build-script", str(failing)]
    )
    assert code == 2 and "failed" in capsys.readouterr().err
    assert not list(tmp_path.glob("release-*.json"))


def test_reads_the_version_as_the_build_does(release: ModuleType) -> None:
    # One reading of pyproject.toml (build/tgflow_version.py): the manifest's version and the
    # archive names build.py writes can never disagree.
    assert release.project_version is load("build").project_version
