"""Make a release: build the bundles, checksum them and write the release manifest.

    python build/release.py --base-url https://downloads.example.com/tgflow/0.2.0/
    python build/release.py --skip-build --dist build/dist --base-url ...

Runs ``build/build.py --dist DIR`` (unless ``--skip-build``), then for every archive
``tgflow-<version>-<platform>.<ext>`` in DIR writes its size and SHA-256 into
``DIR/release-<version>.json`` (the release manifest, docs/updates.md) and ``DIR/SHA256SUMS``
(``sha256sum -c`` format). The version is pyproject.toml's; the notes are the CHANGELOG's
section of that version unless ``--notes-file`` is given.

The manifest is signed by the server, not here: the operator publishes it with
``tgflow-server release publish DIR/release-<version>.json``, which signs it with the server's
``license`` key (a key file or an HSM the build machine never sees).
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import re
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# The repository for agent.protocol, build/ for the version reading build.py shares (already
# first when this runs as a script).
for _path in (ROOT, HERE):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from pydantic import ValidationError  # noqa: E402  (after the repository is on the path)
from tgflow_version import project_version  # noqa: E402

from agent.protocol import (  # noqa: E402
    RELEASE_MANIFEST_FORMAT,
    ReleaseDownload,
    ReleaseManifest,
)

#: Archive extensions, longest first (``.tar.gz`` before ``.gz``).
_EXTENSIONS = (".tar.gz", ".AppImage", ".zip", ".dmg", ".exe", ".msi")


class ReleaseError(Exception):
    """Something the person making the release can fix; printed without a traceback."""


def changelog_notes(version: str, changelog: Path = ROOT / "CHANGELOG.md") -> str:
    """The body of ``## [version]`` in a Keep a Changelog file ("" when there is none)."""
    try:
        text = changelog.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ""
    match = re.search(
        rf"^## \[{re.escape(version)}\][^\n]*\n(.*?)(?=^## |^\[[^\]]+\]: |\Z)",
        text,
        flags=re.M | re.S,
    )
    return match.group(1).strip() if match else ""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def archives(dist: Path, version: str) -> list[Path]:
    """The release's archives in ``dist``: ``tgflow-<version>-*`` files with a known extension."""
    found = [
        path
        for path in sorted(dist.glob(f"tgflow-{version}-*"))
        if path.is_file() and path.name.endswith(_EXTENSIONS)
    ]
    if not found:
        raise ReleaseError(f"no tgflow-{version}-* archive in {dist}")
    return found


def download(path: Path, version: str, base_url: str) -> ReleaseDownload:
    """One archive's manifest entry; its platform is what its name says after the version."""
    rest = path.name.removeprefix(f"tgflow-{version}-")
    extension = next(ext for ext in _EXTENSIONS if rest.endswith(ext))
    try:
        return ReleaseDownload(
            platform=rest.removesuffix(extension),
            name=path.name,
            url=base_url.rstrip("/") + "/" + path.name,
            size=path.stat().st_size,
            sha256=sha256_of(path),
        )
    except ValidationError as exc:
        raise ReleaseError(f"{path.name} cannot be a release download: {exc}") from exc


def build_manifest(
    dist: Path, version: str, base_url: str, notes: str, released: dt.date
) -> ReleaseManifest:
    try:
        return ReleaseManifest(
            format=RELEASE_MANIFEST_FORMAT,
            version=version,
            released=released,
            notes=notes,
            downloads=tuple(download(p, version, base_url) for p in archives(dist, version)),
        )
    except ValidationError as exc:
        raise ReleaseError(f"the release manifest would be invalid: {exc}") from exc


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="build/release.py", description=__doc__.split("\n")[0])
    parser.add_argument("--dist", type=Path, default=ROOT / "build" / "dist")
    parser.add_argument(
        "--skip-build", action="store_true", help="take the archives already in --dist"
    )
    parser.add_argument(
        "--base-url", required=True, help="where the archives will be downloadable from"
    )
    parser.add_argument("--notes-file", type=Path, help="release notes (default: the CHANGELOG)")
    parser.add_argument(
        "--released", type=dt.date.fromisoformat, help="release date (default: today, UTC)"
    )
    parser.add_argument("--build-script", type=Path, default=ROOT / "build" / "build.py")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        version = project_version()
        if not args.skip_build:
            command = [sys.executable, str(args.build_script), "--dist", str(args.dist)]
            print("release: " + " ".join(command), flush=True)
            if subprocess.run(command, check=False).returncode != 0:  # noqa: S603
                raise ReleaseError(f"{args.build_script} failed")
        if args.notes_file is not None:
            notes = args.notes_file.read_text(encoding="utf-8").strip()
        else:
            notes = changelog_notes(version)
        released = args.released or dt.datetime.now(dt.UTC).date()
        manifest = build_manifest(args.dist, version, args.base_url, notes, released)
    except (ReleaseError, OSError) as exc:
        print(f"release: error: {exc}", file=sys.stderr)
        return 2
    output = args.dist / f"release-{version}.json"
    output.write_text(manifest.model_dump_json(indent=2) + "\n", encoding="utf-8")
    sums = "".join(f"{d.sha256}  {d.name}\n" for d in manifest.downloads)
    (args.dist / "SHA256SUMS").write_text(sums, encoding="utf-8")
    for item in manifest.downloads:
        print(f"release: {item.name}  {item.size} bytes  sha256 {item.sha256}")
    print(f"release: wrote {output}; publish it with `tgflow-server release publish {output}`")
    return 0


if __name__ == "__main__":
    sys.exit(main())
