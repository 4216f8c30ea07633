"""Signing in to the license server. The dialog never waits: the sign-in runs on the engine and the
dialog closes when :attr:`SessionViewModel.signed_in` arrives. "Activate with a license file…"
beside it opens :class:`LicenseFileDialog` (offline activation, no account)."""

from __future__ import annotations

from pathlib import Path

from PyQt6.QtCore import Qt
from PyQt6.QtGui import QShowEvent
from PyQt6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.i18n import Translator
from app.viewmodels.session import SessionViewModel

from .error_line import reserve_space
from .license_file_dialog import LicenseFileDialog


class LoginDialog(QDialog):
    def __init__(
        self,
        session: SessionViewModel,
        translator: Translator,
        parent: QWidget | None = None,
        *,
        email: str = "",
        password: str = "",
        demo: bool = False,
        license_directory: Path | None = None,
        demo_license: tuple[Path, str] | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("loginDialog")
        self._license_directory = license_directory
        self._demo_license = demo_license
        #: Built when "Activate with a license file…" is first pressed.
        self.license_file_dialog: LicenseFileDialog | None = None
        self._session = session
        self._tr = translator
        # What a reopened dialog starts from: the demo's credentials again (its note says they
        # are filled in), otherwise the e-mail only.
        self._demo_credentials = (email, password) if demo else None

        self._title = QLabel()
        self._title.setObjectName("title")
        self._intro = QLabel()
        self._intro.setWordWrap(True)
        self._intro.setObjectName("hint")
        # The demo's password is generated at every start: say so, or it looks like a secret
        # the newcomer was supposed to know.
        self.demo_note = QLabel()
        self.demo_note.setObjectName("hint")
        self.demo_note.setWordWrap(True)
        self.demo_note.setVisible(demo)
        self.email = QLineEdit(email)
        self.email.setObjectName("email")
        self.password = QLineEdit(password)
        self.password.setObjectName("password")
        self.password.setEchoMode(QLineEdit.EchoMode.Password)
        self.error = QLabel()
        self.error.setObjectName("error")
        self.error.setWordWrap(True)
        self.error.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.error.hide()
        # Both lines keep their place while empty: an error (or "Signing in…") appearing must
        # not push the Sign in button away from under the mouse.
        reserve_space(self.error)
        self.status = reserve_space(QLabel())
        self.status.setObjectName("hint")

        self._buttons = QDialogButtonBox()
        self.sign_in_button = QPushButton()
        self.sign_in_button.setObjectName("primary")
        self.sign_in_button.setDefault(True)
        self.cancel_button = QPushButton()
        # Enter anywhere presses the default button, Sign in. While signing in the fields are
        # disabled and focus moves to Cancel; were Cancel auto-default, the Enter still being
        # delivered would press it and close the dialog before the error could show.
        self.cancel_button.setAutoDefault(False)
        self.sign_in_button.setAutoDefault(False)
        self._buttons.addButton(self.sign_in_button, QDialogButtonBox.ButtonRole.AcceptRole)
        self._buttons.addButton(self.cancel_button, QDialogButtonBox.ButtonRole.RejectRole)

        self._form = QFormLayout()
        self._email_label = QLabel()
        self._password_label = QLabel()
        self._form.addRow(self._email_label, self.email)
        self._form.addRow(self._password_label, self.password)
        self._or = QLabel()
        self._or.setObjectName("hint")
        self._or.setWordWrap(True)
        self.license_file_button = QPushButton()
        self.license_file_button.setObjectName("licenseFileButton")
        self.license_file_button.setAutoDefault(False)
        alternative = QHBoxLayout()
        alternative.addWidget(self.license_file_button)
        alternative.addStretch(1)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(24, 20, 24, 16)
        layout.setSpacing(10)
        layout.addWidget(self._title)
        layout.addWidget(self._intro)
        layout.addWidget(self.demo_note)
        layout.addLayout(self._form)
        layout.addWidget(self.error)
        layout.addWidget(self.status)
        layout.addWidget(self._buttons)
        layout.addWidget(self._or)
        layout.addLayout(alternative)
        self.setMinimumWidth(420)

        self.sign_in_button.clicked.connect(self._submit)
        self.license_file_button.clicked.connect(self.open_license_file)
        self.cancel_button.clicked.connect(self.reject)
        session.busy_changed.connect(self._busy)
        session.sign_in_failed.connect(self.show_error)
        session.signed_in.connect(self._signed_in)
        translator.language_changed.connect(self._retranslate)
        self._retranslate()
        self._busy(session.busy)
        (self.password if email else self.email).setFocus()

    def _retranslate(self, _language: str = "") -> None:
        tr = self._tr.tr
        self.setWindowTitle(tr("login.window_title"))
        self._title.setText(tr("login.title"))
        self._intro.setText(tr("login.intro"))
        self.demo_note.setText(tr("login.demo_note"))
        self._email_label.setText(tr("login.email"))
        self._password_label.setText(tr("login.password"))
        self.email.setPlaceholderText(tr("login.email_placeholder"))
        self.sign_in_button.setText(tr("login.sign_in"))
        self.cancel_button.setText(tr("login.cancel"))
        self._or.setText(tr("login.or_license_file"))
        self.license_file_button.setText(tr("login.license_file"))
        self._busy(self._session.busy)

    def open_license_file(self) -> LicenseFileDialog:
        """Open the license-file activation (window-modal over this dialog)."""
        if self.license_file_dialog is None:
            self.license_file_dialog = LicenseFileDialog(
                self._session,
                self._tr,
                self,
                directory=self._license_directory,
                demo_file=self._demo_license,
            )
        if not self.license_file_dialog.isVisible():
            self.license_file_dialog.reset_fields()
            self.license_file_dialog.open()
        return self.license_file_dialog

    def reset_fields(self) -> None:
        """Refill the form for a new sign-in: in the demo with its own credentials (a wrong
        password typed earlier must not replace them), otherwise with no password."""
        if self._demo_credentials is not None:
            email, password = self._demo_credentials
            self.email.setText(email)
            self.password.setText(password)
        else:
            self.password.clear()
        self.show_error("")
        (self.password if self.email.text() else self.email).setFocus()

    def reject(self) -> None:
        # A typed password is not kept after Cancel (the next opening starts afresh).
        self.reset_fields()
        super().reject()

    def show_error(self, message: str) -> None:
        self.error.setText(message)
        self.error.setVisible(bool(message))
        if message:
            self.password.selectAll()
            self.password.setFocus()
            self._fit_height()

    def showEvent(self, event: QShowEvent | None) -> None:
        super().showEvent(event)
        # The wrapped notes need more height than the size hint gives at this width.
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

    def _submit(self) -> None:
        if self._session.busy:
            return
        self.show_error("")
        self._session.sign_in(self.email.text(), self.password.text())

    def _busy(self, busy: bool) -> None:
        self.sign_in_button.setEnabled(not busy)
        self.license_file_button.setEnabled(not busy)
        self.email.setEnabled(not busy)
        self.password.setEnabled(not busy)
        self.status.setText(self._tr.tr("login.signing_in") if busy else "")

    def _signed_in(self, _snapshot: object) -> None:
        self.password.clear()
        self.accept()
