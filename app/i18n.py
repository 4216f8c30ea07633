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
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from PyQt6.QtCore import QCoreApplication, QLibraryInfo, QObject, QTranslator, pyqtSignal

from app.catalog import N_, Reason, format_text, load_catalog, translations_dir

__all__ = ["LANGUAGES", "N_", "QtTranslations", "Translator", "qt_translations_dir"]

log = logging.getLogger("tgflow.ui")

#: The languages the window speaks, the default first.
LANGUAGES: Final = ("ru", "en")
DEFAULT_LANGUAGE: Final = "ru"


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
        catalog = self._catalog if key in self._catalog else self._fallback
        text = format_text(catalog, key, fmt)
        if text is None:
            log.warning("no translation for %r", key)
            return key
        return text

    def reason(self, why: Reason) -> str:
        """The text of ``why`` (a lower layer's reason) in the current language."""
        return self.tr(why.key, **why.params)

    def keys(self) -> Mapping[str, str]:
        """The current language's table (read-only use)."""
        return self._catalog


def qt_translations_dir() -> str:
    """Where Qt's own ``.qm`` catalogues are (PyQt6's bundled ``Qt6/translations``)."""
    return QLibraryInfo.path(QLibraryInfo.LibraryPath.TranslationsPath)


class QtTranslations(QObject):
    """Qt's own strings (QMessageBox and QFileDialog buttons and labels) in the window's language.

    Follows ``translator``: the ``qtbase_<language>`` catalogue is installed into the application
    and replaced when the language changes. Qt's source strings are English, so English needs no
    catalogue; a missing one is logged and Qt's English stays. Qt 6's Russian catalogue lacks a
    few strings the file dialog shows (its labels gained accelerators); ``qtbase_supplement.json``
    in the translations supplies them. A QTranslator removes itself from the application when it
    is deleted, so this object's lifetime bounds the installation.
    """

    def __init__(self, translator: Translator, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._installed: list[QTranslator] = []
        translator.language_changed.connect(self._install)
        self._install(translator.language)

    @property
    def language(self) -> str | None:
        """The language of the installed catalogue, ``None`` for Qt's own English."""
        return self._installed[0].language() if self._installed else None

    def _install(self, language: str) -> None:
        app = QCoreApplication.instance()
        if app is None:
            return
        for old in self._installed:
            app.removeTranslator(old)
            old.deleteLater()
        self._installed = []
        if language == "en":
            return
        catalogue = QTranslator(self)
        if not catalogue.load(f"qtbase_{language}", qt_translations_dir()):
            log.warning("Qt's own translations for %r are not installed", language)
            return
        # The one installed last is asked first: the supplement, then Qt's catalogue.
        for installed in (catalogue, _Supplement(language, self)):
            app.installTranslator(installed)
            self._installed.append(installed)


class _Supplement(QTranslator):
    """Qt strings its own catalogue for ``language`` lacks (``qtbase_supplement.json``)."""

    def __init__(self, language: str, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._language = language
        self._table: dict[str, dict[str, str]] = {}
        path = translations_dir() / "qtbase_supplement.json"
        try:
            raw = json.loads(path.read_text(encoding="utf-8")).get(language, {})
            self._table = {str(c): {str(k): str(v) for k, v in t.items()} for c, t in raw.items()}
        except (OSError, ValueError, AttributeError) as exc:
            log.warning("the Qt translation supplement %s cannot be read: %s", path, exc)

    def language(self) -> str:
        return self._language

    def isEmpty(self) -> bool:
        return not self._table

    # Returning None (a null string) lets Qt ask the next translator; "" would blank the text.
    def translate(  # type: ignore[override]
        self,
        context: str | None,
        source: str | None,
        disambiguation: str | None = None,
        n: int = -1,
    ) -> str | None:
        return self._table.get(context or "", {}).get(source or "")
