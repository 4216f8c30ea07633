"""Signing in to the license server (or activating a license file), resuming, signing out."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from PyQt6.QtCore import QObject, pyqtSignal

from app.engine import Engine
from app.i18n import Translator

from .base import EngineBound

if TYPE_CHECKING:
    from app.core import Core, LicenseSnapshot


class SessionViewModel(EngineBound):
    """The license session. One request at a time; :attr:`busy` says whether one runs."""

    #: Signed in (by the dialog or by resuming): the license as it is now.
    signed_in = pyqtSignal(object)
    #: The sign-in failed: a short message for the dialog.
    sign_in_failed = pyqtSignal(str)
    #: :meth:`resume` found no usable stored session; the message says why ("" when none was
    #: stored). The login dialog is shown then.
    needs_sign_in = pyqtSignal(str)
    signed_out = pyqtSignal()
    busy_changed = pyqtSignal(bool)
    #: Activating a license file was refused: a message for the license-file dialog.
    activation_failed = pyqtSignal(str)

    def __init__(
        self, engine: Engine, core: Core, translator: Translator, parent: QObject | None = None
    ) -> None:
        super().__init__(engine, translator, parent)
        self._core = core
        self._busy = False
        self._email: str | None = None
        #: The customer of the license file in use (license-file mode), else ``None``.
        self._customer: str | None = None

    @property
    def busy(self) -> bool:
        return self._busy

    @property
    def customer(self) -> str | None:
        """Whose license file is in use (``None`` unless in license-file mode)."""
        return self._customer

    @property
    def active(self) -> bool:
        """Signed in by e-mail, or licensed by a license file."""
        return self._email is not None or self._customer is not None

    @property
    def email(self) -> str | None:
        """Who is signed in (``None`` when nobody is)."""
        return self._email

    def _set_busy(self, busy: bool) -> None:
        if busy != self._busy:
            self._busy = busy
            self.busy_changed.emit(busy)

    def sign_in(self, email: str, password: str) -> bool:
        """Start signing in; ``False`` (and :attr:`sign_in_failed`) when refused at once."""
        if self._busy:
            return False
        email = email.strip()
        if not email or not password:
            self.sign_in_failed.emit(self._tr.tr("login.error.empty"))
            return False
        self._set_busy(True)
        return self.submit(
            self._core.sign_in(email, password),
            self._done,
            self._sign_in_failed,
            what="sign in",
        )

    def activate_file(self, path: str | Path, license_key: str) -> bool:
        """Start activating the license file at ``path``; ``False`` (and
        :attr:`activation_failed`) when refused at once."""
        if self._busy:
            return False
        path = str(path).strip()
        if not path:
            self.activation_failed.emit(self._tr.tr("license_file.error.no_file"))
            return False
        if not license_key.strip():
            self.activation_failed.emit(self._tr.tr("license_file.refused.no_key"))
            return False
        self._set_busy(True)
        return self.submit(
            self._core.activate_license_file(Path(path), license_key),
            self._done,
            self._activation_failed,
            what="activate license file",
        )

    def resume(self) -> bool:
        """Sign in with the stored session, if there is one."""
        if self._busy:
            return False
        self._set_busy(True)
        return self.submit(
            self._core.resume_session(), self._resumed, self._resume_failed, what="resume session"
        )

    def sign_out(self) -> bool:
        if self._busy:
            return False
        self._set_busy(True)
        return self.submit(self._core.sign_out(), self._out, self._sign_out_failed, what="sign out")

    def _done(self, snapshot: LicenseSnapshot) -> None:
        self._set_busy(False)
        self._email = snapshot.email
        facts = snapshot.license_file
        self._customer = None if facts is None else facts.customer
        self.signed_in.emit(snapshot)

    def _activation_failed(self, message: str) -> None:
        self._set_busy(False)
        self.activation_failed.emit(message)

    def license_file_gone(self) -> None:
        """The license file was deactivated (from the License panel): signed out."""
        self._email = None
        self._customer = None
        self.signed_out.emit()

    def _sign_in_failed(self, message: str) -> None:
        self._set_busy(False)
        self.sign_in_failed.emit(message)

    def _resumed(self, snapshot: LicenseSnapshot | None) -> None:
        if snapshot is None:
            self._set_busy(False)
            self.needs_sign_in.emit("")
        else:
            self._done(snapshot)

    def _resume_failed(self, message: str) -> None:
        self._set_busy(False)
        self.needs_sign_in.emit(message)

    def _out(self, _result: None) -> None:
        self._set_busy(False)
        self._email = None
        self._customer = None
        self.signed_out.emit()

    def _sign_out_failed(self, message: str) -> None:
        # The local session is gone even when the server could not be told (Core.sign_out).
        self._set_busy(False)
        self._email = None
        self._customer = None
        self.report_error(message)
        self.signed_out.emit()
