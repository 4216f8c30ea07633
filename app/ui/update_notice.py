"""Help → Check for updates, About, and the update notice (docs/updates.md).

Kept out of the main window's module: :func:`install_updates` adds the Help menu to a built
:class:`~app.ui.main_window.MainWindow` and starts the daily check. The notice shows the new
version, its date and notes, and for this machine's platform the download link, size and SHA-256
to check the archive against. Nothing is downloaded or installed by the program.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

from PyQt6.QtCore import QObject, Qt
from PyQt6.QtGui import QAction
from PyQt6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QLabel,
    QMainWindow,
    QMessageBox,
    QVBoxLayout,
    QWidget,
)

from app.engine import Engine
from app.i18n import Translator
from app.viewmodels.formatting import format_count
from app.viewmodels.updates import UpdatesViewModel

if TYPE_CHECKING:
    from agent.protocol import ReleaseManifestClaims
    from app.core import Core
    from app.updates import UpdateService


def _megabytes(size: int, tr: Translator) -> str:
    """``123.5`` (``123,5`` in Russian): megabytes to one decimal, in the window's language."""
    whole, tenth = divmod(round(size / 100_000), 10)
    return f"{format_count(whole, tr)}{tr.tr('format.decimal_point')}{tenth}"


class UpdateNoticeDialog(QDialog):
    """A newer release: what it is and where to get it (non-modal; closes with the window)."""

    def __init__(self, translator: Translator, running: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("updateNotice")
        self._tr = translator
        self._running = running
        self._release: ReleaseManifestClaims | None = None
        self.heading = QLabel()
        self.heading.setObjectName("title")
        self.released = QLabel()
        self.notes = QLabel()
        self.notes.setWordWrap(True)
        self.notes.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.downloads = QLabel()
        self.downloads.setWordWrap(True)
        self.downloads.setOpenExternalLinks(True)
        self.downloads.setTextFormat(Qt.TextFormat.RichText)
        self.downloads.setTextInteractionFlags(
            Qt.TextInteractionFlag.TextBrowserInteraction
            | Qt.TextInteractionFlag.TextSelectableByMouse
        )
        self.hint = QLabel()
        self.hint.setObjectName("hint")
        self.hint.setWordWrap(True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.close)
        layout = QVBoxLayout(self)
        for widget in (self.heading, self.released, self.notes, self.downloads, self.hint):
            layout.addWidget(widget)
        layout.addWidget(buttons)
        self.resize(560, 320)
        translator.language_changed.connect(self._retranslate)

    def show_release(self, release: ReleaseManifestClaims) -> None:
        """Show ``release`` (an open notice shows the newer one in place)."""
        self._release = release
        self._retranslate()
        self.show()

    def _retranslate(self, _language: str = "") -> None:
        release = self._release
        if release is None:
            return
        # Here, not at the top: the window is built before the agent's stack is imported.
        from agent.updates import current_platform, downloads_for

        tr = self._tr.tr
        self.setWindowTitle(tr("updates.title"))
        self.heading.setText(tr("updates.available", version=release.version))
        self.released.setText(
            tr("updates.released", date=release.released.isoformat(), running=self._running)
        )
        self.notes.setText(release.notes)
        self.notes.setVisible(bool(release.notes))
        rows = []
        for item in downloads_for(release, current_platform()):
            link = f'<a href="{html.escape(item.url)}">{html.escape(item.name)}</a>'
            size = tr("updates.size", megabytes=_megabytes(item.size, self._tr))
            rows.append(f"{link} ({size})<br>SHA-256: <code>{item.sha256}</code>")
        self.downloads.setText("<br><br>".join(rows))
        self.hint.setText(tr("updates.hint"))


class HelpMenu(QObject):
    """The window's Help menu: Check for updates and About; answers of a manual check."""

    def __init__(
        self, window: QMainWindow, updates: UpdatesViewModel, translator: Translator
    ) -> None:
        super().__init__(window)
        self._window = window
        self._tr = translator
        self.updates = updates
        bar = window.menuBar()
        assert bar is not None
        menu = bar.addMenu("")
        assert menu is not None
        self.menu = menu
        self.check_action = QAction(window)
        self.check_action.triggered.connect(lambda: updates.check(manual=True))
        self.about_action = QAction(window)
        self.about_action.triggered.connect(self.show_about)
        menu.addAction(self.check_action)
        menu.addSeparator()
        menu.addAction(self.about_action)
        self.notice = UpdateNoticeDialog(translator, updates.version, window)
        #: The last answer of a manual check that found nothing to show (``None`` until then).
        self.answer: QMessageBox | None = None
        updates.available.connect(self.notice.show_release)
        updates.up_to_date.connect(
            lambda: self._answer(self._tr.tr("updates.up_to_date", version=updates.version))
        )
        updates.failed.connect(
            lambda reason: self._answer(self._tr.tr("updates.failed", reason=reason), warn=True)
        )
        translator.language_changed.connect(self._retranslate)
        self._retranslate()

    def show_about(self) -> None:
        self._answer(self._tr.tr("help.about_text", version=self.updates.version))

    def _answer(self, text: str, *, warn: bool = False) -> None:
        if self.answer is None:
            self.answer = QMessageBox(self._window)
            self.answer.setObjectName("updateAnswer")
            # Qt's "OK" stays Latin in Russian; "Close" has its translation.
            self.answer.setStandardButtons(QMessageBox.StandardButton.Close)
        box = self.answer
        box.setIcon(QMessageBox.Icon.Warning if warn else QMessageBox.Icon.Information)
        box.setWindowTitle(self._tr.tr("updates.title"))
        box.setText(text)
        box.open()  # window-modal, no nested event loop

    def _retranslate(self, _language: str = "") -> None:
        tr = self._tr.tr
        self.menu.setTitle(tr("menu.help"))
        self.check_action.setText(tr("menu.check_updates"))
        self.about_action.setText(tr("menu.about"))


def install_updates(
    window: QMainWindow,
    engine: Engine,
    core: Core,
    translator: Translator,
    *,
    start: bool = True,
) -> HelpMenu:
    """Add the Help menu to ``window`` and (``start``) begin the daily update check."""

    def service() -> UpdateService:
        from app.updates import UpdateService

        # Read on the engine once the core is built (a DeferredCore stands in until then).
        return UpdateService(core.config.api_base_url, core.config.pins, core.data_dir, core.clock)

    updates = UpdatesViewModel(engine, translator, service, window)
    menu = HelpMenu(window, updates, translator)
    if start:
        updates.start()
    return menu
