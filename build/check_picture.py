"""Check that a PNG is a real picture of a window (the frozen demo's), with the stdlib only.

    python build/check_picture.py PICTURE

Exit 0 and one line with its size when it is a PNG at least MIN_WIDTH x MIN_HEIGHT whose pixels
are not all alike; exit 1 with the reason otherwise.
"""

from __future__ import annotations

import struct
import sys
import zlib
from pathlib import Path

MIN_WIDTH, MIN_HEIGHT = 400, 300
#: Distinct byte values a drawn window's pixel data has at least (a blank one has a handful).
MIN_DISTINCT_BYTES = 32
_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def describe(data: bytes) -> tuple[int, int, int]:
    """(width, height, distinct byte values of the pixel data); ValueError when not a PNG."""
    if not data.startswith(_SIGNATURE):
        raise ValueError("not a PNG file")
    pos, width, height, pixels = len(_SIGNATURE), 0, 0, b""
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height = struct.unpack(">II", body[:8])
        elif kind == b"IDAT":
            pixels += body
        elif kind == b"IEND":
            break
        pos += 12 + length
    if not width or not pixels:
        raise ValueError("a PNG without a header or pixel data")
    try:
        raw = zlib.decompress(pixels)
    except zlib.error as exc:
        raise ValueError(f"the pixel data cannot be read: {exc}") from exc
    return width, height, len(set(raw))


def check(path: Path) -> str:
    """A line describing the picture; ValueError saying why it is not a window's picture."""
    if not path.is_file():
        raise ValueError(f"{path} does not exist")
    width, height, distinct = describe(path.read_bytes())
    if width < MIN_WIDTH or height < MIN_HEIGHT:
        raise ValueError(f"{width}x{height} is smaller than a window ({MIN_WIDTH}x{MIN_HEIGHT})")
    if distinct < MIN_DISTINCT_BYTES:
        raise ValueError(f"{width}x{height} but nearly blank ({distinct} distinct byte values)")
    return f"{path}: {width}x{height} PNG, {path.stat().st_size} bytes"


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: check_picture.py PICTURE", file=sys.stderr)
        return 2
    try:
        print(check(Path(argv[0])))
    except ValueError as exc:
        print(f"check_picture.py: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
