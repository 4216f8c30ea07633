"""The Logs panel: this session's HTML log and the earlier ones."""

from __future__ import annotations

from pathlib import Path

from PyQt6.QtCore import Qt
from PyQt6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSplitter,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from app.i18n import N_, Translator
from app.viewmodels.formatting import format_datetime
from app.viewmodels.logs import LogEntry, LogsViewModel, LogText, localize_log


class LogsPanel(QWidget):
    def __init__(
        self, model: LogsViewModel, translator: Translator, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.setObjectName("logsPanel")
        self._vm = model
        self._tr = translator
        self._shown: LogText | None = None

        self.list = QListWidget()
        self.list.setObjectName("logList")
        self.list.currentItemChanged.connect(self._selected)
        self.refresh_button = QPushButton()
        self.refresh_button.clicked.connect(self.refresh)
        self.empty = QLabel()
        self.empty.setObjectName("hint")
        self.empty.setWordWrap(True)
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 6, 0)
        left_layout.addWidget(self.list, 1)
        left_layout.addWidget(self.empty)
        buttons = QHBoxLayout()
        buttons.addWidget(self.refresh_button)
        buttons.addStretch(1)
        left_layout.addLayout(buttons)

        self.title = QLabel()
        self.title.setObjectName("emphasis")
        self.truncated = QLabel()
        self.truncated.setObjectName("hint")
        self.truncated.hide()
        self.browser = QTextBrowser()
        self.browser.setObjectName("logView")
        # A log is a record, not a web page: links are not followed.
        self.browser.setOpenLinks(False)
        self.browser.setOpenExternalLinks(False)
        self.error = QLabel()
        self.error.setObjectName("error")
        self.error.setWordWrap(True)
        self.error.hide()
        right = QWidget()
        right_layout = QVBoxLayout(right)
        right_layout.setContentsMargins(6, 0, 0, 0)
        right_layout.addWidget(self.title)
        right_layout.addWidget(self.truncated)
        right_layout.addWidget(self.browser, 1)
        right_layout.addWidget(self.error)

        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(left)
        splitter.addWidget(right)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([340, 760])
        layout = QVBoxLayout(self)
        layout.addWidget(splitter)

        model.logs_changed.connect(self._show_logs)
        model.log_loaded.connect(self._show_log)
        model.failed.connect(self._failed)
        translator.language_changed.connect(self._retranslate)
        self._retranslate()

    def _retranslate(self, _language: str = "") -> None:
        tr = self._tr.tr
        self.refresh_button.setText(tr("logs.refresh"))
        self.empty.setText(tr("logs.empty"))
        self.truncated.setText(tr("logs.truncated"))
        self._show_logs(self._vm.logs, reopen=False)
        if self._shown is None:
            self.title.setText(tr("logs.choose"))
        else:
            self._show_log(self._shown)  # the headings and story lines in the new language

    def refresh(self) -> None:
        self.error.hide()
        self._vm.refresh()

    def _label(self, entry: LogEntry) -> str:
        tr = self._tr.tr
        when = format_datetime(entry.started, self._tr)
        size = max(1, round(entry.size / 1024))
        key = N_("logs.item.current") if entry.current else N_("logs.item")
        return tr(key, when=when, name=entry.name, size=size)

    def _show_logs(self, logs: list[LogEntry], *, reopen: bool = True) -> None:
        current = self.list.currentItem()
        selected = current.data(Qt.ItemDataRole.UserRole) if current is not None else None
        paths = [str(entry.path) for entry in logs]
        row = paths.index(selected) if selected in paths else (0 if logs else -1)
        self.list.blockSignals(True)
        self.list.clear()
        for entry in logs:
            item = QListWidgetItem(self._label(entry))
            item.setData(Qt.ItemDataRole.UserRole, str(entry.path))
            self.list.addItem(item)
        self.list.setCurrentRow(row)
        self.list.blockSignals(False)
        self.empty.setVisible(not logs)
        if reopen and row >= 0:
            self._selected(self.list.currentItem())

    def _selected(self, item: QListWidgetItem | None, _previous: object = None) -> None:
        if item is None:
            return
        self.error.hide()
        self._vm.open(Path(item.data(Qt.ItemDataRole.UserRole)))

    def _show_log(self, text: LogText) -> None:
        self._shown = text
        self.title.setText(text.path.name)
        self.truncated.setVisible(text.truncated)
        bar = self.browser.verticalScrollBar()
        at_end = bar is None or bar.value() >= bar.maximum() - 4
        self.browser.setHtml(localize_log(text.html, self._tr))
        if bar is not None and at_end:
            bar.setValue(bar.maximum())

    def _failed(self, message: str) -> None:
        self.error.setText(message)
        self.error.show()
