"""The project's version, for the packaging scripts (build.py names the archive with it,
release.py the manifest): one reading of pyproject.toml, so the two can never disagree."""

from __future__ import annotations

import importlib
import importlib.metadata
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def project_version(pyproject: Path = ROOT / "pyproject.toml") -> str:
    """The project's version: ``[project] version``, or where it is dynamic, setuptools'
    ``attr``/``file`` source, else the installed ``tgflow``'s metadata."""
    data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    version = data["project"].get("version")
    if isinstance(version, str) and version:
        return version
    source = data.get("tool", {}).get("setuptools", {}).get("dynamic", {}).get("version", {})
    if "file" in source:
        files = source["file"] if isinstance(source["file"], list) else [source["file"]]
        return (pyproject.parent / files[0]).read_text(encoding="utf-8").strip()
    if "attr" in source:
        module, _, name = source["attr"].rpartition(".")
        sys.path.insert(0, str(pyproject.parent))
        try:
            return str(getattr(importlib.import_module(module), name))
        finally:
            sys.path.remove(str(pyproject.parent))
    return importlib.metadata.version("tgflow")
