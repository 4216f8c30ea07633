"""The Settings panel's logic: the values of settings.ini, and saving edits to it.

Saving goes through :func:`app.config.save_settings` on the engine: it validates the edited file
first (a bad value leaves the file untouched and its ``SettingsError`` names the file, the key and
the reason) and keeps the user's comments and order.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

from PyQt6.QtCore import QObject, pyqtSignal

from app.engine import Engine
from app.i18n import Translator
from app.settings_schema import SECTIONS, format_value, options

from .queued import QueuedWork

if TYPE_CHECKING:
    from app.config import Settings, SettingsError

Key = tuple[str, str]


@dataclass(frozen=True)
class Field:
    section: str
    key: str
    kind: str
    #: Translation keys of the label and of its explanation.
    label: str
    help: str

    @property
    def id(self) -> Key:
        return (self.section, self.key)


def label_key(section: str, key: str) -> str:
    """The translation key of a settings key's label (its help adds ``.help``)."""
    return f"settings.{section}.{key}"


def section_label_key(section: str) -> str:
    return f"settings.section.{section}"


#: Every key of settings.ini, in the file's order, as the schema declares it.
FIELDS: Final = tuple(
    Field(o.section, o.key, o.kind, label_key(*o.id), label_key(*o.id) + ".help") for o in options()
)

#: Keys whose new value is used at once; the others at the next start.
LIVE_KEYS: Final = frozenset(o.id for o in options() if o.live)

SECTION_LABELS: Final = {name: section_label_key(name) for name in SECTIONS}


def values_of(settings: Settings) -> dict[Key, str]:
    """Each key's value as the form shows it (and as settings.ini would hold it)."""
    values = {}
    for field in FIELDS:
        section = getattr(settings, field.section)
        values[field.id] = format_value(getattr(section, field.key))
    return values


def _load(path: Path) -> Settings:
    from app.config import Settings, load_settings

    return load_settings(path) if path.exists() else Settings()


def _save(path: Path, changes: Mapping[Key, str]) -> Settings | SettingsError:
    """Save on the engine; a validation failure is an answer (its problems name the keys)."""
    from app.config import SettingsError, save_settings

    try:
        return save_settings(path, dict(changes))
    except SettingsError as exc:
        return exc


class SettingsViewModel(QueuedWork):
    """settings.ini's values and saving edits; a save asked for while one runs waits its turn
    (:class:`QueuedWork`) and then writes what still differs, so no edit is lost."""

    #: Every key's value (``dict[Key, str]``), after loading or saving.
    loaded = pyqtSignal(dict)
    #: The keys saved and their new values (``dict[Key, str]``); empty when nothing changed.
    saved = pyqtSignal(dict)
    # ``failed`` (QueuedWork): the SettingsError's text (the file, the key and the reason), or
    # another short message.
    #: The keys (``list[Key]``) a failed save found fault with (empty when none is named).
    invalid = pyqtSignal(list)

    def __init__(
        self,
        engine: Engine,
        translator: Translator,
        path: Path,
        *,
        settings: Settings | None = None,
        server_in_use: str = "",
        embedded_server: bool = False,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(engine, translator, parent)
        self._path = path
        #: The license server this run really talks to (the demo's own, or settings.ini's as it
        #: was read at start), which the form's [license] api_base_url may no longer say.
        self.server_in_use = server_in_use
        self.embedded_server = embedded_server
        self._values: dict[Key, str] = values_of(settings) if settings is not None else {}

    @property
    def path(self) -> Path:
        return self._path

    @property
    def values(self) -> dict[Key, str]:
        return dict(self._values)

    def load(self) -> bool:
        path = self._path
        return self.call(lambda: _load(path), self._loaded, what="load settings")

    def _loaded(self, settings: Settings) -> None:
        self._values = values_of(settings)
        self.loaded.emit(self.values)

    def changes(self, values: Mapping[Key, str]) -> dict[Key, str]:
        """The entries of ``values`` that differ from what is saved."""
        return {k: v for k, v in values.items() if self._values.get(k) != v}

    def save(self, values: Mapping[Key, str]) -> bool:
        """Write the entries of ``values`` that changed; the file is untouched on any error."""
        edited = dict(values)
        if not self.busy and not self.changes(edited):
            self.saved.emit({})
            return True
        return self._act(lambda: self._save(edited))

    def _save(self, values: dict[Key, str]) -> bool:
        # Compared when its turn comes: a save that waited writes only what the one before it
        # did not already write.
        changes = self.changes(values)
        if not changes:
            self.saved.emit({})
            return False
        path = self._path

        def done(result: Settings | SettingsError) -> None:
            if isinstance(result, Exception):
                keys = [
                    (p.section, p.key)
                    for p in result.problems
                    if p.section is not None and p.key is not None
                ]
                self.invalid.emit(keys)
                self._failed(self.describe(result))
                return
            self._values = values_of(result)
            self.invalid.emit([])
            self.saved.emit({k: self._values.get(k, v) for k, v in changes.items()})
            self._next()

        return self.call(lambda: _save(path, changes), done, self._failed, what="save settings")

    def _reload(self) -> bool:
        return False  # the file is read once, at start; saving keeps ``values`` current

    @staticmethod
    def needs_restart(changes: Mapping[Key, str]) -> bool:
        return any(key not in LIVE_KEYS for key in changes)
