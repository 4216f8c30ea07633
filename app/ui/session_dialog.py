"""What the two ways in share: the e-mail sign-in and the license-file activation are one kind of
dialog — a title, an intro, the demo's note, a form, an error line, a status line and a primary
button beside Cancel — so they look and behave alike."""

from __future__ import annotations

from PyQt6.QtCore import Qt
from PyQt6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QLabel,
    QLayout,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.i18n import Translator
from app.viewmodels.session import SessionViewModel

from .error_line import reserve_space


class SessionDialog(QDialog):
    """The frame; a subclass builds its form and calls :meth:`_lay_out`."""

    def __init__(
        self,
        session: SessionViewModel,
        translator: Translator,
        parent: QWidget | None,
        *,
        demo: bool,
    ) -> None:
        super().__init__(parent)
        self._session = session
        self._tr = translator

        self._title = QLabel()
        self._title.setObjectName("title")
        self._intro = QLabel()
        self._intro.setWordWrap(True)
        self._intro.setObjectName("hint")
        # The demo fills the form in (its password is generated at every start): the note says
        # so, or it looks like a secret the newcomer was supposed to know.
        self.demo_note = QLabel()
        self.demo_note.setObjectName("hint")
        self.demo_note.setWordWrap(True)
        self.demo_note.setVisible(demo)

        self.error = QLabel()
        self.error.setObjectName("error")
        self.error.setWordWrap(True)
        self.error.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.error.hide()
        # Both lines keep their place while empty: an error (or "Signing in…") appearing must
        # not push the primary button away from under the mouse.
        reserve_space(self.error)
        self.status = reserve_space(QLabel())
        self.status.setObjectName("hint")

        self.primary_button = QPushButton()
        self.primary_button.setObjectName("primary")
        self.primary_button.setDefault(True)
        self.cancel_button = QPushButton()
        # Enter anywhere presses the default button. While busy the fields are disabled and
        # focus moves to Cancel; were Cancel auto-default, the Enter still being delivered
        # would press it and close the dialog before the error could show.
        self.primary_button.setAutoDefault(False)
        self.cancel_button.setAutoDefault(False)
        self._buttons = QDialogButtonBox()
        self._buttons.addButton(self.primary_button, QDialogButtonBox.ButtonRole.AcceptRole)
        self._buttons.addButton(self.cancel_button, QDialogButtonBox.ButtonRole.RejectRole)
        self.cancel_button.clicked.connect(self.reject)

    def _lay_out(self, form: QLayout, *after: QWidget | QLayout, minimum_width: int) -> QVBoxLayout:
        """Title, intro, demo note, ``form``, error, status, buttons, then ``after``."""
        layout = QVBoxLayout(self)
        layout.setContentsMargins(24, 20, 24, 16)
        layout.setSpacing(10)
        above: tuple[QWidget, ...] = (self._title, self._intro, self.demo_note)
        below: tuple[QWidget, ...] = (self.error, self.status, self._buttons)
        for widget in above:
            layout.addWidget(widget)
        layout.addLayout(form)
        for widget in below:
            layout.addWidget(widget)
        for item in after:
            if isinstance(item, QLayout):
                layout.addLayout(item)
            else:
                layout.addWidget(item)
        self.setMinimumWidth(minimum_width)
        return layout

    def show_error(self, message: str) -> None:
        self.error.setText(message)
        self.error.setVisible(bool(message))
        if message:
            self._fit_height()

    def _fit_height(self) -> None:
        """Grow (never shrink) to the height a wrapped error needs at the current width: a
        top-level layout does not follow a label's height-for-width by itself."""
        layout = self.layout()
        if layout is None:
            return
        layout.activate()
        needed = layout.totalHeightForWidth(self.width())
        if needed > self.height():
            self.resize(self.width(), needed)
