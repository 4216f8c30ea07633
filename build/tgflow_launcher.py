"""The frozen program's entry script (PyInstaller runs a script, not a ``-m`` module)."""

import sys

from app.main import main

if __name__ == "__main__":
    sys.exit(main())
