"""Closing the main window while a broadcast runs (docs/desktop.md): asked first, and on yes
the broadcast is stopped the way Stop does, the window closing once the worker has finished.

Kept out of the main window's module: :class:`QuitGuard` holds the question and the
"quitting" state; the window's ``closeEvent`` asks :meth:`QuitGuard.allows_close`.
"""

from __future__ import annotations

from collections.abc import Callable

from PyQt6.QtCore import QObject
from PyQt6.QtWidgets import QMainWindow, QMessageBox, QPushButton

from app.i18n import Translator
from app.viewmodels.broadcast import BroadcastSession


class QuitGuard(QObject):
    """Keeps ``window`` open while ``broadcast`` runs, unless the user says stop and quit."""

    def __init__(
        self,
        window: QMainWindow,
        broadcast: BroadcastSession,
        translator: Translator,
        status_message: Callable[[str], None],
    ) -> None:
        """Guard ``window``; ``status_message`` shows "stopping…" in its status bar."""
        super().__init__(window)
        self._window = window
        self._broadcast = broadcast
        self._tr = translator
        self._status_message = status_message
        #: Asked when the window is closed while a broadcast runs (``None`` until then).
        self.box: QMessageBox | None = None
        self._stop: QPushButton | None = None
        self._keep: QPushButton | None = None
        self._quitting = False
        broadcast.finished.connect(self._quit_if_asked)
        broadcast.failed.connect(self._quit_if_asked)

    def allows_close(self) -> bool:
        """Whether the window may close now; while a broadcast runs, no, and the user is asked
        (once: not again while a stop asked for is under way)."""
        if not self._broadcast.running:
            return True
        if not self._quitting:
            self._confirm()
        return False

    def _confirm(self) -> None:
        tr = self._tr.tr
        if self.box is None:
            box = QMessageBox(self._window)
            box.setObjectName("quitConfirm")
            box.setIcon(QMessageBox.Icon.Question)
            self._stop = box.addButton("", QMessageBox.ButtonRole.AcceptRole)
            self._keep = box.addButton("", QMessageBox.ButtonRole.RejectRole)
            box.setDefaultButton(self._keep)
            box.setEscapeButton(self._keep)
            box.buttonClicked.connect(self._answered)
            self.box = box
        box = self.box
        box.setWindowTitle(tr("quit.title"))
        box.setText(tr("quit.broadcast_running"))
        box.setInformativeText(tr("quit.broadcast_running_detail"))
        assert self._stop is not None and self._keep is not None
        self._stop.setText(tr("quit.stop_and_quit"))
        self._keep.setText(tr("quit.keep_sending"))
        box.open()  # window-modal, no nested event loop

    def _answered(self, button: object) -> None:
        if button is self._stop:
            self._stop_and_quit()

    def _stop_and_quit(self) -> None:
        if not self._broadcast.running:
            self._window.close()
            return
        self._quitting = True
        self._status_message(self._tr.tr("quit.stopping"))
        self._broadcast.stop()

    def _quit_if_asked(self, _result: object) -> None:
        if self._quitting:
            self._quitting = False
            self._window.close()
