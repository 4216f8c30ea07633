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
    """``build/<name>.py`` as a module (build/ first on sys.path while it loads, as when it
    runs; not after, so that ``build`` never shadows another package in the test session)."""
    saved = list(sys.path)
    sys.path.insert(0, str(BUILD_DIR))
    try:
        spec = importlib.util.spec_from_file_location(
            f"tgflow_build_{name}", BUILD_DIR / f"{name}.py"
        )
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path[:] = saved
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


def icu_package(items: dict[str, bytes]) -> bytes:
    """An ICU common data package (``CmnD``) of ``items``, laid out as ICU's pkg tool does."""
    info = struct.pack("<HHBBBB4s4s4s", 20, 0, 0, 0, 2, 0, b"CmnD", b"\1\0\0\0", b"\0\0\0\0")
    header = struct.pack("<H2s", 32, b"\xda\x27") + info
    header += b"\0" * (32 - len(header))
    table = 4 + 8 * len(items)
    names = b"".join(name.encode() + b"\0" for name in items)
    names += b"\0" * (-(32 + table + len(names)) % 16)
    entries, blobs, name_at = [], b"", table
    for name, data in items.items():
        entries.append(struct.pack("<II", name_at, table + len(names) + len(blobs)))
        name_at += len(name) + 1
        blobs += data + b"\0" * (-len(data) % 16)
    return header + struct.pack("<I", len(items)) + b"".join(entries) + names + blobs
