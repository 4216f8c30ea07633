"""``tgflow``: the desktop program's entry point."""

from __future__ import annotations

import sys


def main() -> int:
    # The PyQt6 desktop is built under its own issue; until then the entry point says so
    # plainly instead of failing with an import error.
    print(
        "tgflow: the desktop program is not built yet. "
        "Run `tgflow-server demo` for the reference backend.",
        file=sys.stderr,
    )
    return 1


if __name__ == "__main__":
    sys.exit(main())
