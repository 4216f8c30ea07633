"""The window's language: Russian by default, English switchable while the program runs.

Every string a user sees comes from :meth:`Translator.tr` with a key of
``resources/translations/<language>.json``. Widgets re-label themselves when
:attr:`Translator.language_changed` fires. A key that is used only indirectly (kept in a table
and looked up later) is marked with :func:`N_`, so that the test which checks that every key used
in ``app/`` exists can find it.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from PyQt6.QtCore import QObject, pyqtSignal

log = logging.getLogger("tgflow.ui")

#: The languages the window speaks, the default first.
LANGUAGES: Final = ("ru", "en")
DEFAULT_LANGUAGE: Final = "ru"


def resource_dir() -> Path:
    """``resources/`` of the repository, or of the PyInstaller bundle when frozen."""
    bundle = getattr(sys, "_MEIPASS", None)
    if bundle is not None:
        return Path(bundle) / "resources"
    return Path(__file__).resolve().parents[1] / "resources"


def translations_dir() -> Path:
    return resource_dir() / "translations"


def N_(key: str) -> str:
    """Mark ``key`` as a translation key used indirectly; returns it unchanged."""
    return key


def load_catalog(language: str, directory: Path | None = None) -> dict[str, str]:
    """The ``key -> text`` table of ``language`` (empty, and logged, when it cannot be read)."""
    path = (directory or translations_dir()) / f"{language}.json"
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        log.error("the translations %s cannot be read: %s", path, exc)
        return {}
    if not isinstance(raw, dict):
        log.error("the translations %s are not a JSON object", path)
        return {}
    return {str(k): str(v) for k, v in raw.items()}


class Translator(QObject):
    """Looks up the window's strings in the current language."""

    #: The new language code (``ru`` or ``en``).
    language_changed = pyqtSignal(str)

    def __init__(
        self,
        language: str = DEFAULT_LANGUAGE,
        *,
        directory: Path | None = None,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self._directory = directory
        self._catalogs: dict[str, dict[str, str]] = {}
        self._language = language if language in LANGUAGES else DEFAULT_LANGUAGE
        self._catalog = self._load(self._language)
        # English is the fallback for a key missing from another language.
        self._fallback = self._load("en")

    def _load(self, language: str) -> dict[str, str]:
        if language not in self._catalogs:
            self._catalogs[language] = load_catalog(language, self._directory)
        return self._catalogs[language]

    @property
    def language(self) -> str:
        return self._language

    def set_language(self, language: str) -> None:
        """Switch to ``language`` (one of :data:`LANGUAGES`) and tell every widget."""
        if language not in LANGUAGES:
            raise ValueError(f"unknown language {language!r}")
        if language == self._language:
            return
        self._language = language
        self._catalog = self._load(language)
        self.language_changed.emit(language)

    # Shadows QObject.tr (Qt's own .ts catalogues, unused here) on purpose: one name for lookups.
    def tr(self, key: str, /, **fmt: object) -> str:  # type: ignore[override]
        """The text of ``key`` in the current language, with ``{name}`` fields filled in."""
        text = self._catalog.get(key)
        if text is None:
            text = self._fallback.get(key)
            if text is None:
                log.warning("no translation for %r", key)
                return key
        if not fmt:
            return text
        try:
            return text.format(**fmt)
        except (KeyError, IndexError, ValueError) as exc:
            log.warning("the translation of %r does not fit its fields: %s", key, exc)
            return text

    def keys(self) -> Mapping[str, str]:
        """The current language's table (read-only use)."""
        return self._catalog
