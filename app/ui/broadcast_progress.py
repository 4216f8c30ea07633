"""The Broadcast panel's right side: the run's state line, progress bar, counters, notices and the
per-recipient status table (with "never send to these again" on its rows)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

from PyQt6.QtCore import Qt, QTimer
from PyQt6.QtGui import QAction
from PyQt6.QtWidgets import (
    QAbstractItemView,
    QGridLayout,
    QGroupBox,
    QHeaderView,
    QLabel,
    QListWidget,
    QProgressBar,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from app.i18n import N_, Translator
from app.viewmodels.broadcast import BroadcastSession
from app.viewmodels.formatting import format_count, format_datetime, format_duration
from app.viewmodels.recipient_table import RecipientTableModel

if TYPE_CHECKING:
    from app.broadcast import Progress
    from app.core import LicenseSnapshot

#: Notices kept in the list (older ones drop off).
MAX_NOTICES: Final = 200

_STATE_KEYS: Final = {
    "ready": N_("broadcast.state.ready"),
    "running": N_("broadcast.state.running"),
    "paused": N_("broadcast.state.paused"),
    "waiting": N_("broadcast.state.waiting"),
    "stopped": N_("broadcast.state.stopped"),
    "finished": N_("broadcast.state.finished"),
}


class ProgressView(QWidget):
    """Follows one :class:`BroadcastSession`; the panel owns the controls that steer it."""

    def __init__(self, session: BroadcastSession, translator: Translator) -> None:
        super().__init__()
        self._vm = session
        self._tr = translator

        self._progress_box = QGroupBox()
        self.state = QLabel()
        self.state.setObjectName("emphasis")
        self.state.setWordWrap(True)
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(0)
        self.counters = {
            name: QLabel("—") for name in ("sent", "failed", "skipped", "pending", "quota")
        }
        self._counter_labels = {name: QLabel() for name in self.counters}
        grid = QGridLayout()
        for column, name in enumerate(self.counters):
            self._counter_labels[name].setObjectName("hint")
            self.counters[name].setObjectName("counter")
            grid.addWidget(self._counter_labels[name], 0, column)
            grid.addWidget(self.counters[name], 1, column)
        self.notices = QListWidget()
        self.notices.setObjectName("notices")
        self.notices.setMaximumHeight(100)
        self._notices_label = QLabel()
        self._notices_label.setObjectName("hint")
        box = QVBoxLayout(self._progress_box)
        box.addWidget(self.state)
        box.addWidget(self.progress_bar)
        box.addLayout(grid)
        box.addWidget(self._notices_label)
        box.addWidget(self.notices)

        self.table_model = RecipientTableModel(translator, self)
        self.table = QTableView()
        self.table.setObjectName("recipients")
        self.table.setModel(self.table_model)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setAlternatingRowColors(True)
        self.table.setWordWrap(False)
        # Right click on rows: never send to these people again (the suppression list).
        self.suppress_action = QAction(self.table)
        self.suppress_action.triggered.connect(self._suppress_selected)
        self.table.addAction(self.suppress_action)
        self.table.setContextMenuPolicy(Qt.ContextMenuPolicy.ActionsContextMenu)
        vertical = self.table.verticalHeader()
        assert vertical is not None
        vertical.setVisible(False)
        # Fixed row heights: the view never measures ten thousand rows.
        vertical.setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        vertical.setDefaultSectionSize(24)
        horizontal = self.table.horizontalHeader()
        assert horizontal is not None
        horizontal.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        horizontal.setStretchLastSection(True)
        horizontal.resizeSection(0, 60)
        horizontal.resizeSection(1, 200)
        horizontal.resizeSection(2, 110)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 0, 0, 0)
        layout.addWidget(self._progress_box)
        layout.addWidget(self.table, 1)

        self._countdown = QTimer(self)
        self._countdown.setInterval(1000)
        self._countdown.timeout.connect(self.show_state)

        session.started.connect(self._started)
        session.rows_loaded.connect(self.table_model.set_rows)
        session.recipients_changed.connect(self.table_model.apply)
        session.progress.connect(self.show_progress)
        session.notice.connect(self.add_notice)

    def retranslate(self) -> None:
        tr = self._tr.tr
        self._progress_box.setTitle(tr("broadcast.progress"))
        self._counter_labels["sent"].setText(tr("broadcast.counter.sent"))
        self._counter_labels["failed"].setText(tr("broadcast.counter.failed"))
        self._counter_labels["skipped"].setText(tr("broadcast.counter.skipped"))
        self._counter_labels["pending"].setText(tr("broadcast.counter.pending"))
        self._counter_labels["quota"].setText(tr("broadcast.counter.quota"))
        self._notices_label.setText(tr("broadcast.notices"))
        self.suppress_action.setText(tr("broadcast.suppress_selected"))
        self.show_state()

    def selected_recipients(self) -> list[str]:
        selection = self.table.selectionModel()
        if selection is None:
            return []
        return [self.table_model.recipient_at(i.row()) for i in selection.selectedRows()]

    def _suppress_selected(self) -> None:
        recipients = self.selected_recipients()
        if recipients:
            self._vm.suppression.add_recipients(recipients)

    def show_imported(self, recipients: Sequence[str]) -> None:
        """A new list: every recipient pending, no notices."""
        self.table_model.set_recipients(recipients)
        self.progress_bar.setRange(0, max(1, len(recipients)))
        self.progress_bar.setValue(0)
        for name in ("sent", "failed", "skipped"):
            self.counters[name].setText("0")
        self.counters["pending"].setText(format_count(len(recipients), self._tr))
        self.notices.clear()

    def _started(self, _broadcast_id: str) -> None:
        # The table already holds this run's rows (rows_loaded): the counters follow them.
        counts = self.table_model.counts()
        self.progress_bar.setRange(0, max(1, self.table_model.rowCount()))
        self.progress_bar.setValue(sum(counts.get(s, 0) for s in ("sent", "failed", "skipped")))
        for name in ("sent", "failed", "skipped", "pending"):
            self.counters[name].setText(format_count(counts.get(name, 0), self._tr))
        self.show_state()

    def show_progress(self, progress: Progress) -> None:
        counts = progress.counts
        self.progress_bar.setRange(0, max(1, counts.total))
        self.progress_bar.setValue(counts.done)
        self.counters["sent"].setText(format_count(counts.sent, self._tr))
        self.counters["failed"].setText(format_count(counts.failed, self._tr))
        self.counters["skipped"].setText(format_count(counts.skipped, self._tr))
        self.counters["pending"].setText(format_count(counts.pending, self._tr))
        if progress.quota_left is not None:
            self.counters["quota"].setText(format_count(progress.quota_left, self._tr))
        self.show_state()

    def show_license(self, snapshot: LicenseSnapshot | None) -> None:
        """The quota left, while no run reports its own."""
        if not self._vm.running:
            self.counters["quota"].setText(
                format_count(snapshot.remaining, self._tr) if snapshot is not None else "—"
            )

    def show_state(self) -> None:
        tr = self._tr.tr
        progress = self._vm.last_progress
        waiting = False
        if progress is None:
            if self._vm.running:
                text = tr("broadcast.state.starting")
            elif self._vm.recipients:
                text = tr(
                    "broadcast.state.imported",
                    count=format_count(len(self._vm.recipients), self._tr),
                )
            else:
                text = tr("broadcast.state.idle")
        else:
            state = str(progress.state)
            key = _STATE_KEYS.get(state)
            text = tr(key) if key else state
            if state == "waiting" and progress.until is not None:
                waiting = True
                left = (progress.until - self._vm.now()).total_seconds()
                text = tr(
                    "broadcast.state.waiting_for",
                    left=format_duration(left, self._tr),
                    reason=self._vm.describe_reason(progress.detail) if progress.detail else "—",
                )
            elif state == "stopped" and progress.detail:
                text = tr(
                    "broadcast.state.stopped_because",
                    reason=self._vm.describe_reason(progress.detail),
                )
            elif self._vm.running and self._vm.paused and state == "running":
                text = tr("broadcast.state.pausing")
        self.state.setText(text)
        if waiting and not self._countdown.isActive():
            self._countdown.start()
        elif not waiting and self._countdown.isActive():
            self._countdown.stop()

    def add_notice(self, kind: str, message: str) -> None:
        now = format_datetime(self._vm.now(), self._tr)
        self.notices.insertItem(0, f"{now}  {message}")
        item = self.notices.item(0)
        if item is not None:
            item.setData(Qt.ItemDataRole.UserRole, kind)
        while self.notices.count() > MAX_NOTICES:
            self.notices.takeItem(self.notices.count() - 1)
