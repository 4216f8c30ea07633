"""Where the desktop program keeps its settings, data and session logs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final

import platformdirs

from agent.private_files import APP_NAME, PRIVATE_DIR_MODE

#: Name of the settings file looked for beside the program and in the config dir.
SETTINGS_FILE_NAME: Final = "settings.ini"


@dataclass(frozen=True)
class AppPaths:
    """The program's three per-user directories."""

    config_dir: Path
    data_dir: Path
    log_dir: Path

    @classmethod
    def default(cls) -> AppPaths:
        """platformdirs' per-user directories for ``TGFlow``.

        ``data_dir`` is the agent's data dir too (``agent.private_files.default_data_dir``), so the
        refresh-token file, ``license.json`` and the program's own state live side by side.
        """
        return cls(
            config_dir=Path(platformdirs.user_config_dir(APP_NAME, appauthor=False)),
            data_dir=Path(platformdirs.user_data_dir(APP_NAME, appauthor=False)),
            log_dir=Path(platformdirs.user_log_dir(APP_NAME, appauthor=False)),
        )

    @classmethod
    def under(cls, root: Path) -> AppPaths:
        """All three directories below ``root`` (tests and the demo mode)."""
        return cls(config_dir=root / "config", data_dir=root / "data", log_dir=root / "logs")

    @property
    def settings_file(self) -> Path:
        """``settings.ini`` in the config dir (the last place ``find_config`` tries)."""
        return self.config_dir / SETTINGS_FILE_NAME

    def ensure(self) -> AppPaths:
        """Create the directories that are missing (owner-only where the OS honours modes)."""
        for directory in (self.config_dir, self.data_dir, self.log_dir):
            directory.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR_MODE)
        return self
