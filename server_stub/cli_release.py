"""``tgflow-server --version`` and ``tgflow-server release publish|show`` (docs/updates.md).

``publish`` reads the manifest ``build/release.py`` wrote, signs it with the ``license`` key and
makes it the one ``GET /releases/latest`` serves; like the other operator commands it acts as an
Admin on the local machine and is audited (actor ``cli:<os user>``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pydantic import ValidationError

from agent.protocol import ReleaseManifest

from . import __version__
from .cli_staff import ServicesFactory, add_group, cli_actor
from .errors import ValidationFailed
from .wiring import Services


def read_manifest(path: Path) -> ReleaseManifest:
    """The manifest in ``path``; :class:`ValidationFailed` naming what is wrong with it."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValidationFailed(f"cannot read {path}: {exc.strerror or exc}") from exc
    try:
        return ReleaseManifest.model_validate_json(text)
    except ValidationError as exc:
        raise ValidationFailed(f"{path} is not a release manifest: {exc}") from exc


def cmd_release(args: argparse.Namespace, services: Services) -> None:
    if args.action == "publish":
        if args.manifest is None:
            raise ValidationFailed("publish: name the manifest file build/release.py wrote")
        claims = services.releases.publish(cli_actor(), read_manifest(args.manifest))
        names = ", ".join(d.name for d in claims.downloads)
        print(f"release {claims.version} published (signed at {claims.iat}): {names}")
        return
    claims = services.releases.latest_claims()
    print(json.dumps(claims.model_dump(mode="json"), indent=2, ensure_ascii=False))


def add_commands(
    parser: argparse.ArgumentParser,
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
    services: ServicesFactory,
) -> None:
    parser.add_argument("--version", action="version", version=f"tgflow-server {__version__}")

    text = "publish the release manifest desktops are told about, or show it (audited)"
    p = add_group(sub, common, services, "release", text, cmd_release)
    p.add_argument("action", choices=["publish", "show"])
    p.add_argument("manifest", nargs="?", type=Path, help="publish: build/release.py's manifest")
