"""Signing in to the license server, resuming the stored session, signing out."""

from __future__ import annotations

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

    def __init__(
        self, engine: Engine, core: Core, translator: Translator, parent: QObject | None = None
    ) -> None:
        super().__init__(engine, translator, parent)
        self._core = core
        self._busy = False
        self._email: str | None = None

    @property
    def busy(self) -> bool:
        return self._busy

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
        self.signed_in.emit(snapshot)

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
        self.signed_out.emit()

    def _sign_out_failed(self, message: str) -> None:
        # The local session is gone even when the server could not be told (Core.sign_out).
        self._set_busy(False)
        self._email = None
        self.report_error(message)
        self.signed_out.emit()
