"""Signing in to the license server. The dialog never waits: the sign-in runs on the engine and the
dialog closes when :attr:`SessionViewModel.signed_in` arrives. "Activate with a license file…"
beside it opens :class:`LicenseFileDialog` (offline activation, no account)."""

from __future__ import annotations

from pathlib import Path

from PyQt6.QtGui import QShowEvent
from PyQt6.QtWidgets import (
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QWidget,
)

from app.i18n import Translator
from app.viewmodels.session import SessionViewModel

from .license_file_dialog import LicenseFileDialog
from .session_dialog import SessionDialog


class LoginDialog(SessionDialog):
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
        super().__init__(session, translator, parent, demo=demo)
        self.setObjectName("loginDialog")
        self._license_directory = license_directory
        self._demo_license = demo_license
        #: Built when "Activate with a license file…" is first pressed.
        self.license_file_dialog: LicenseFileDialog | None = None
        # What a reopened dialog starts from: the demo's credentials again (its note says they
        # are filled in), otherwise the e-mail only.
        self._demo_credentials = (email, password) if demo else None

        self.email = QLineEdit(email)
        self.email.setObjectName("email")
        self.password = QLineEdit(password)
        self.password.setObjectName("password")
        self.password.setEchoMode(QLineEdit.EchoMode.Password)
        self.sign_in_button = self.primary_button

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
        self._lay_out(self._form, self._or, alternative, minimum_width=420)

        self.sign_in_button.clicked.connect(self._submit)
        self.license_file_button.clicked.connect(self.open_license_file)
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
        super().show_error(message)
        if message:
            self.password.selectAll()
            self.password.setFocus()

    def showEvent(self, event: QShowEvent | None) -> None:
        super().showEvent(event)
        # The wrapped notes need more height than the size hint gives at this width.
        self._fit_height()

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
