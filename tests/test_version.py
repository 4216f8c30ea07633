"""One version (docs/updates.md, "The version"): pyproject.toml's ``[project] version`` is the
source; the packages' ``__version__``, the installed metadata, both ``--version`` flags and the
CHANGELOG's newest release must agree with it."""

from __future__ import annotations

import importlib.metadata
import re
import tomllib
from pathlib import Path

import pytest

import app
import server_stub
from app.main import main as tgflow_main
from server_stub.cli import main as server_main

ROOT = Path(__file__).resolve().parent.parent


def pyproject_version() -> str:
    with (ROOT / "pyproject.toml").open("rb") as fh:
        return str(tomllib.load(fh)["project"]["version"])


def test_the_packages_carry_pyprojects_version() -> None:
    version = pyproject_version()
    assert app.__version__ == version
    assert server_stub.__version__ == version


def test_the_installed_metadata_agrees() -> None:
    # An editable install keeps the version it was installed with: reinstall after a bump.
    assert importlib.metadata.version("tgflow") == pyproject_version(), "pip install -e . again"


@pytest.mark.parametrize(
    ("main", "name"), [(tgflow_main, "tgflow"), (server_main, "tgflow-server")]
)
def test_the_version_flags(main: object, name: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--version"])  # type: ignore[operator]
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"{name} {pyproject_version()}"


def test_the_changelogs_newest_release_is_this_version() -> None:
    text = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert "## [Unreleased]" in text
    released = re.findall(r"^## \[(\d[^\]]*)\] - (\d{4}-\d{2}-\d{2})$", text, flags=re.M)
    assert released, "no dated release section"
    assert released[0][0] == pyproject_version()
    assert re.search(rf"^\[{re.escape(released[0][0])}\]: ", text, flags=re.M)
