"""``settings.ini``: where it is found, what it may hold, and how the program edits it.

DESIGN.md ("Desktop behaviour"): an unknown section or key, or a bad value, is reported with the
file, the ``[section] key`` and the reason, and the program does not start half-configured. Every
problem in a file is reported at once (a syntax error stops the reading, as in any parser), and
the entry point prints :class:`SettingsError`'s message, never a traceback.

The file is read with :mod:`configparser` in strict mode (a repeated section or key is an error)
without interpolation; a ``[DEFAULT]`` section is not special, and therefore unknown. Edits go
through ``configupdater`` so that the user's comments, order and blank lines survive, and the file
is replaced atomically only once the edited text has passed the same validation.

This package only re-exports; each part has its own module: :mod:`.problems` (what is wrong),
:mod:`.validation` (the text against the model), :mod:`.files` (finding, reading and replacing
the file) and :mod:`.editing` (comment-keeping edits).
"""

from __future__ import annotations

from app.config.editing import edit_settings_text, save_settings
from app.config.files import find_config, frozen_executable_dir, load_settings
from app.config.problems import SettingsError, SettingsProblem
from app.config.validation import check_live_settings, parse_settings
from app.settings_schema import (
    SECTIONS,
    AntiSpamSettings,
    BroadcastSettings,
    FloodSettings,
    LicenseSettings,
    Settings,
    TelegramSettings,
    TelemetrySettings,
    UiSettings,
    section_keys,
)

__all__ = [
    "SECTIONS",
    "AntiSpamSettings",
    "BroadcastSettings",
    "FloodSettings",
    "LicenseSettings",
    "Settings",
    "SettingsError",
    "SettingsProblem",
    "TelegramSettings",
    "TelemetrySettings",
    "UiSettings",
    "check_live_settings",
    "edit_settings_text",
    "find_config",
    "frozen_executable_dir",
    "load_settings",
    "parse_settings",
    "save_settings",
    "section_keys",
]
