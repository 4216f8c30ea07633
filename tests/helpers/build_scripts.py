"""The packaging scripts of build/ (not a package: PyInstaller runs them as files), loaded by
path for tests that check them without building."""

from __future__ import annotations

import importlib.util
import struct
import sys
import zlib
from pathlib import Path
from types import ModuleType

BUILD_DIR = Path(__file__).resolve().parents[2] / "build"


def load(name: str) -> ModuleType:
    """``build/<name>.py`` as a module (build/ first on sys.path, as when it runs)."""
    if str(BUILD_DIR) not in sys.path:
        sys.path.insert(0, str(BUILD_DIR))
    spec = importlib.util.spec_from_file_location(f"tgflow_build_{name}", BUILD_DIR / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def png(width: int, height: int, pixel: bytes | None = None) -> bytes:
    """An RGB PNG: every pixel ``pixel`` when given, else a gradient (many distinct values)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    rows = b"".join(
        b"\x00"
        + b"".join(
            pixel or bytes(((x + y) % 256, (x * 3) % 256, (y * 5) % 256)) for x in range(width)
        )
        for y in range(height)
    )
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )
