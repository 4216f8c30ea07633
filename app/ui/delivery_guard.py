"""The Broadcast tab's guards against sending to someone who should not get the message:
the choice shown when a list already received the text, and the suppression list."""

from __future__ import annotations

from typing import TYPE_CHECKING

from PyQt6.QtCore import pyqtSignal
from PyQt6.QtWidgets import (
    QAbstractItemView,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.i18n import Translator
from app.viewmodels.formatting import format_count, format_datetime
from app.viewmodels.suppression import SuppressionViewModel

if TYPE_CHECKING:
    from app.broadcast_store import DeliveryPlan, Suppressed


class RepeatChoice(QFrame):
    """ "N of M already received this text": send only to the rest, send again, or cancel.

    Shown in place (never a modal dialog); the safe choice is the default button.
    """

    #: ``False``: only to those who did not receive it; ``True``: to everyone again.
    chosen = pyqtSignal(bool)

    def __init__(self, translator: Translator, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("repeatChoice")
        self._tr = translator
        self._plan: DeliveryPlan | None = None
        self.text = QLabel()
        self.text.setObjectName("warning")
        self.text.setWordWrap(True)
        self.rest_button = QPushButton()
        self.rest_button.setObjectName("primary")
        self.rest_button.setDefault(True)
        self.again_button = QPushButton()
        self.cancel_button = QPushButton()
        buttons = QHBoxLayout()
        buttons.addWidget(self.rest_button)
        buttons.addWidget(self.again_button)
        buttons.addWidget(self.cancel_button)
        buttons.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 4, 0, 4)
        layout.addWidget(self.text)
        layout.addLayout(buttons)
        self.rest_button.clicked.connect(lambda: self._choose(False))
        self.again_button.clicked.connect(lambda: self._choose(True))
        self.cancel_button.clicked.connect(self.dismiss)
        translator.language_changed.connect(lambda _language: self._retranslate())
        self.hide()

    @property
    def plan(self) -> DeliveryPlan | None:
        return self._plan

    def ask(self, plan: DeliveryPlan) -> None:
        self._plan = plan
        self._retranslate()
        self.show()
        self.rest_button.setFocus()

    def dismiss(self) -> None:
        self._plan = None
        self.hide()

    def _choose(self, send_again: bool) -> None:
        self.dismiss()
        self.chosen.emit(send_again)

    def _retranslate(self) -> None:
        tr = self._tr.tr
        plan = self._plan
        if plan is None:
            return
        already = len(plan.already_received)
        self.text.setText(
            tr(
                "broadcast.repeat.text",
                already=format_count(already, self._tr),
                total=format_count(plan.total, self._tr),
                when=format_datetime(plan.last_sent_at, self._tr),
            )
            + (
                " "
                + tr(
                    "broadcast.repeat.suppressed",
                    count=format_count(len(plan.suppressed), self._tr),
                )
                if plan.suppressed
                else ""
            )
        )
        self.rest_button.setText(
            tr("broadcast.repeat.rest", count=format_count(plan.fresh, self._tr))
        )
        self.rest_button.setEnabled(plan.fresh > 0)
        self.again_button.setText(
            tr("broadcast.repeat.again", count=format_count(plan.fresh + already, self._tr))
        )
        self.cancel_button.setText(tr("broadcast.repeat.cancel"))


class SuppressionBox(QGroupBox):
    """The suppression list: who, why, since when; add by typing, remove the selected."""

    def __init__(
        self, model: SuppressionViewModel, translator: Translator, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.setObjectName("suppression")
        self._vm = model
        self._tr = translator
        self._hint = QLabel()
        self._hint.setObjectName("hint")
        self._hint.setWordWrap(True)
        self.table = QTableWidget(0, 3)
        self.table.setObjectName("suppressed")
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setFixedHeight(140)
        vertical = self.table.verticalHeader()
        if vertical is not None:
            vertical.setVisible(False)
        horizontal = self.table.horizontalHeader()
        if horizontal is not None:
            horizontal.setStretchLastSection(True)
            horizontal.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        self.entry = QLineEdit()
        self.entry.setObjectName("suppressEntry")
        self.add_button = QPushButton()
        self.remove_button = QPushButton()
        self.remove_button.setEnabled(False)
        self.message = QLabel()
        self.message.setObjectName("hint")
        self.message.setWordWrap(True)
        row = QHBoxLayout()
        row.addWidget(self.entry, 1)
        row.addWidget(self.add_button)
        row.addWidget(self.remove_button)
        layout = QVBoxLayout(self)
        layout.addWidget(self._hint)
        layout.addWidget(self.table)
        layout.addLayout(row)
        layout.addWidget(self.message)

        self.add_button.clicked.connect(self._add)
        self.entry.returnPressed.connect(self._add)
        self.remove_button.clicked.connect(self._remove)
        self.table.itemSelectionChanged.connect(self._selection_changed)
        model.changed.connect(self._show)
        model.added.connect(self._added)
        model.failed.connect(self.message.setText)
        translator.language_changed.connect(lambda _language: self._retranslate())
        self._retranslate()

    def selected(self) -> list[str]:
        rows = sorted({index.row() for index in self.table.selectedIndexes()})
        items = [self.table.item(row, 0) for row in rows]
        return [item.text() for item in items if item is not None]

    def _add(self) -> None:
        text = self.entry.text()
        if text.strip():
            self.message.clear()
            self._vm.add(text)

    def _added(self, added: int, problems: list[str]) -> None:
        tr = self._tr.tr
        text = tr("suppression.added", count=format_count(added, self._tr))
        if problems:
            text += " " + "; ".join(problems)
        else:
            self.entry.clear()
        self.message.setText(text)

    def _remove(self) -> None:
        recipients = self.selected()
        if recipients:
            self.message.clear()
            self._vm.remove(recipients)

    def _selection_changed(self) -> None:
        self.remove_button.setEnabled(bool(self.selected()))

    def _show(self, entries: list[Suppressed]) -> None:
        self.table.setRowCount(len(entries))
        for row, entry in enumerate(entries):
            reason = self._vm.describe_reason(str(entry.reason))
            if entry.detail:
                reason = f"{reason} ({entry.detail})"
            cells = (entry.recipient, reason, format_datetime(entry.created_at, self._tr))
            for column, text in enumerate(cells):
                self.table.setItem(row, column, QTableWidgetItem(text))
        self.setTitle(self._tr.tr("suppression.title", count=format_count(len(entries), self._tr)))
        self._selection_changed()

    def _retranslate(self) -> None:
        tr = self._tr.tr
        self._hint.setText(tr("suppression.hint"))
        self.entry.setPlaceholderText(tr("suppression.placeholder"))
        self.add_button.setText(tr("suppression.add"))
        self.remove_button.setText(tr("suppression.remove"))
        self.table.setHorizontalHeaderLabels(
            [
                tr("suppression.column.recipient"),
                tr("suppression.column.reason"),
                tr("suppression.column.since"),
            ]
        )
        self._show(self._vm.entries)
