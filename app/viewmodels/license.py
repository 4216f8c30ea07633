"""The License panel's data: plan, quota, devices, the offline lease, why sending is refused;
in license-file mode the file's modules and limits, replacing and deactivating it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from PyQt6.QtCore import QObject, pyqtSignal

from app.engine import Engine
from app.i18n import Translator

from .queued import QueuedWork

if TYPE_CHECKING:
    from app.core import Core, LicenseSnapshot
    from app.license_online import OnlineEvent


class LicenseViewModel(QueuedWork):
    """The user's actions asked for while other work runs (a heartbeat's refresh, say) run in
    turn once it ends, never dropped (:class:`QueuedWork`)."""

    changed = pyqtSignal(object)
    #: A newer license file replaced the one in use (its file version).
    replaced = pyqtSignal(int)
    #: The license file was deactivated: the program is no longer licensed.
    deactivated = pyqtSignal()

    def __init__(
        self, engine: Engine, core: Core, translator: Translator, parent: QObject | None = None
    ) -> None:
        super().__init__(engine, translator, parent)
        self._core = core
        self._snapshot: LicenseSnapshot | None = None
        # The heartbeats' outcomes (license-file mode), on the engine thread.
        engine.call_soon(lambda: core.subscribe_online(self._heard))

    @property
    def snapshot(self) -> LicenseSnapshot | None:
        return self._snapshot

    def set_snapshot(self, snapshot: LicenseSnapshot | None) -> None:
        """Show ``snapshot`` (given by a sign-in); ``None`` after signing out."""
        self._snapshot = snapshot
        self.changed.emit(snapshot)

    def _heard(self, event: OnlineEvent) -> None:
        # Engine thread: hand the event to the GUI thread.
        self._engine.to_gui(lambda: self._guard(self._apply_online)(event))

    def _apply_online(self, event: OnlineEvent) -> None:
        """What the license server said: a newer file goes the way of one chosen by hand;
        anything else (a refusal, "last checked") shows on the next snapshot."""
        if event.new_file is not None:
            self.newer_file_arrived(event.new_file, online=True)
        else:
            self.refresh()  # while busy: once the work running ends

    def refresh(self) -> bool:
        """Ask for a fresh snapshot; while other work runs, once it ends (``False``: not now)."""
        if self._busy:
            self._stale = True
            return False
        return self._act(self._reload)

    def _reload(self) -> bool:
        return self.submit(self._core.license_snapshot(), self._got, self._failed, what="license")

    def deactivate_device(self, device_id: str) -> bool:
        return self._act(
            lambda: self.submit(
                self._core.deactivate_device(device_id), self._got, self._failed, what="deactivate"
            )
        )

    def replace_file(self, path: str | Path) -> bool:
        """ "Replace with a newer file…": the file chosen, opened with the key already typed."""
        return self._act(
            lambda: self.submit(
                self._core.replace_license_file(Path(path)),
                self._replaced,
                self._failed,
                what="replace license file",
            )
        )

    def newer_file_arrived(self, text: str, *, online: bool = False) -> bool:
        """A newer version of the license file in use arrived as text (the online heartbeat's
        hook, :mod:`app.license_online`: ``online``); it replaces the kept one like a file
        chosen by hand, and an older version is refused with the same message."""
        return self._act(
            lambda: self.submit(
                self._core.newer_license_file(text, online=online),
                self._replaced,
                self._failed,
                what="newer license file",
            )
        )

    def deactivate(self) -> bool:
        """Forget the license file (the broadcasts stop); :attr:`deactivated` when done."""
        return self._act(
            lambda: self.submit(
                self._core.deactivate_license_file(),
                self._deactivated,
                self._failed,
                what="deactivate license file",
            )
        )

    def _replaced(self, snapshot: LicenseSnapshot) -> None:
        self.set_snapshot(snapshot)
        if snapshot.license_file is not None:
            self.replaced.emit(snapshot.license_file.file_version)
        self._next()

    def _deactivated(self, _result: None) -> None:
        # Nothing waiting applies to a license that is gone.
        self._pending.clear()
        self._stale = False
        self._set_busy(False)
        self.set_snapshot(None)
        self.deactivated.emit()

    def _got(self, snapshot: LicenseSnapshot) -> None:
        self.set_snapshot(snapshot)
        self._next()
