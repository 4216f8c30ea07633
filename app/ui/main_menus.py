"""The main window's menu bar and status bar: File (sign in, sign out, quit), View → Language,
and the status bar's mode and user labels.

Kept out of the main window's module: :class:`MainMenus` builds them on the window once, calls
back into it for what the actions do, and :meth:`MainMenus.retranslate` names them in the
window's language. What is enabled and what the user label says is the window's (it knows the
session).
"""

from __future__ import annotations

from collections.abc import Callable

from PyQt6.QtGui import QAction, QActionGroup
from PyQt6.QtWidgets import QLabel, QMainWindow, QStatusBar

from app.i18n import LANGUAGES, Translator

from .settings_panel import LANGUAGE_NAMES


class MainMenus:
    """The File and View menus and the status bar labels of ``window``."""

    def __init__(
        self,
        window: QMainWindow,
        translator: Translator,
        *,
        sign_in: Callable[[], object],
        sign_out: Callable[[], object],
        set_language: Callable[[str], None],
        simulated: bool,
    ) -> None:
        """Build them on ``window``: the actions call ``sign_in``, ``sign_out``, the window's
        ``close`` and ``set_language``; ``simulated`` shows the simulated mode's label."""
        self._tr = translator
        self._simulated = simulated
        menu_bar = window.menuBar()
        assert menu_bar is not None
        file_menu = menu_bar.addMenu("")
        view_menu = menu_bar.addMenu("")
        assert file_menu is not None and view_menu is not None
        self.sign_in_action = QAction(window)
        self.sign_in_action.triggered.connect(lambda: sign_in())
        self.sign_out_action = QAction(window)
        self.sign_out_action.triggered.connect(lambda: sign_out())
        self.quit_action = QAction(window)
        self.quit_action.triggered.connect(window.close)
        file_menu.addAction(self.sign_in_action)
        file_menu.addAction(self.sign_out_action)
        file_menu.addSeparator()
        file_menu.addAction(self.quit_action)
        language_menu = view_menu.addMenu("")
        assert language_menu is not None
        self._menus = (file_menu, view_menu, language_menu)
        self._language_group = QActionGroup(window)
        self._language_group.setExclusive(True)
        self.language_actions: dict[str, QAction] = {}
        for language in LANGUAGES:
            action = QAction(window)
            action.setCheckable(True)
            action.setChecked(language == translator.language)
            action.triggered.connect(lambda _checked=False, lang=language: set_language(lang))
            self._language_group.addAction(action)
            language_menu.addAction(action)
            self.language_actions[language] = action

        status = QStatusBar()
        window.setStatusBar(status)
        self.user_label = QLabel()
        self.mode_label = QLabel()
        self.mode_label.setObjectName("hint")
        status.addPermanentWidget(self.mode_label)
        status.addPermanentWidget(self.user_label)

    def retranslate(self) -> None:
        """Name the menus, the actions and the mode label in the window's language."""
        tr = self._tr.tr
        file_menu, view_menu, language_menu = self._menus
        file_menu.setTitle(tr("menu.file"))
        view_menu.setTitle(tr("menu.view"))
        language_menu.setTitle(tr("menu.language"))
        self.sign_in_action.setText(tr("menu.sign_in"))
        self.sign_out_action.setText(tr("menu.sign_out"))
        self.quit_action.setText(tr("menu.quit"))
        for language, action in self.language_actions.items():
            action.setText(tr(LANGUAGE_NAMES[language]))
            action.setChecked(language == self._tr.language)
        self.mode_label.setText(tr("main.simulated") if self._simulated else "")
