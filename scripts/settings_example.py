"""Write ``settings.ini.example`` from the settings schema (``app/settings_schema.py``).

Run after changing a key: ``.venv/bin/python scripts/settings_example.py``.
``tests/app/test_config.py`` fails while the file is stale.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.settings_schema import example_text  # noqa: E402 - after the path set-up

EXAMPLE = ROOT / "settings.ini.example"


def main() -> int:
    text = example_text()
    if EXAMPLE.exists() and EXAMPLE.read_text(encoding="utf-8") == text:
        print(f"{EXAMPLE.name} is up to date")
        return 0
    EXAMPLE.write_text(text, encoding="utf-8")
    print(f"wrote {EXAMPLE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
