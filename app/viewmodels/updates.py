"""The update notice's data (docs/updates.md): checks once a day while the program runs and when
the user asks (Help → Check for updates), and says what it found.

Only a check that asked the server announces a release (the automatic one at most once a day, so
a dismissed notice comes back tomorrow, not every hour); a manual check always answers: the
release, "up to date", or why it could not tell.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from PyQt6.QtCore import QObject, QTimer, pyqtSignal

from app import __version__
from app.engine import Engine
from app.i18n import Translator

from .base import EngineBound

if TYPE_CHECKING:
    from agent.protocol import ReleaseManifestClaims
    from agent.updates import UpdateCheck
    from app.updates import UpdateService

log = logging.getLogger("tgflow.updates")

#: How often the running program looks whether the daily check is due (milliseconds).
WAKE_INTERVAL_MS: Final = 3600 * 1000


class UpdatesViewModel(EngineBound):
    """Runs the checks on the engine and tells the window what they found."""

    #: A newer genuine release (:class:`agent.protocol.ReleaseManifestClaims`).
    available = pyqtSignal(object)
    #: A manual check found nothing newer than the running version.
    up_to_date = pyqtSignal()
    #: A manual check could not tell (the reason, in the window's language).
    failed = pyqtSignal(str)
    #: Every check that ended, with what it found (:class:`agent.updates.UpdateCheck`).
    checked = pyqtSignal(object)

    def __init__(
        self,
        engine: Engine,
        translator: Translator,
        service: Callable[[], UpdateService],
        parent: QObject | None = None,
        *,
        wake_interval_ms: int = WAKE_INTERVAL_MS,
    ) -> None:
        """``service`` is called on the engine at the first check (it reads the data dir)."""
        super().__init__(engine, translator, parent)
        self._make_service = service
        self._service: UpdateService | None = None
        #: The release last announced, if any.
        self.notice: ReleaseManifestClaims | None = None
        #: The running version.
        self.version = __version__
        self._timer = QTimer(self)
        self._timer.setInterval(wake_interval_ms)
        self._timer.timeout.connect(lambda: self.check(manual=False))

    def start(self) -> None:
        """Check now if a day has passed since the last check, and look again every hour."""
        self.check(manual=False)
        self._timer.start()

    def check(self, *, manual: bool) -> None:
        """Ask the backend (``manual``: whatever the time of the last check)."""
        self.submit(
            self._run(force=manual),
            lambda result: self._done(result, manual),
            lambda message: self._failed(message, manual),
            what="update check",
        )

    async def _run(self, *, force: bool) -> UpdateCheck:
        if self._service is None:
            self._service = self._make_service()
        return await self._service.check(force=force)

    def _done(self, result: UpdateCheck, manual: bool) -> None:
        self.checked.emit(result)
        if result.notice is not None and (result.asked or manual):
            self.notice = result.notice
            self.available.emit(result.notice)
        elif manual and result.ignored is not None:
            self.failed.emit(self._tr.tr("updates.ignored"))
        elif manual:
            self.up_to_date.emit()

    def _failed(self, message: str, manual: bool) -> None:
        log.warning("the update check failed: %s", message)
        if manual:
            self.failed.emit(message)
