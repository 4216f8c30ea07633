"""The per-recipient status table of a broadcast, updated in batches.

Ten thousand rows must stay smooth: rows are set once per import (one model reset) and every
later change arrives as a batch that ends in a single ``dataChanged`` over the rows it touched,
never a reset per message.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Final

from PyQt6.QtCore import QAbstractTableModel, QModelIndex, QObject, QPersistentModelIndex, Qt
from PyQt6.QtGui import QColor

from app.i18n import N_, Translator
from app.viewmodels.telegram_text import telegram_text

#: (recipient, state, detail); the state is a ``RecipientState`` value or ``"new"`` before the
#: broadcast exists.
RecipientUpdate = tuple[str, str, str]

NEW: Final = "new"

_STATE_KEYS: Final = {
    NEW: N_("recipient.state.new"),
    "pending": N_("recipient.state.pending"),
    "sent": N_("recipient.state.sent"),
    "failed": N_("recipient.state.failed"),
    "skipped": N_("recipient.state.skipped"),
}
_STATE_COLOURS: Final = {
    "sent": QColor("#2e7d32"),
    "failed": QColor("#c62828"),
    "skipped": QColor("#6b7280"),
}
#: Details the store writes as codes (see ``app.broadcast_store``), shown in words.
_DETAIL_KEYS: Final = {
    "already_received": N_("recipient.detail.already_received"),
    "suppressed:blocked": N_("recipient.detail.suppressed_blocked"),
    "suppressed:user": N_("recipient.detail.suppressed_user"),
    "suppressed:opt_out": N_("recipient.detail.suppressed_opt_out"),
}
_HEADER_KEYS: Final = (
    N_("recipient.column.number"),
    N_("recipient.column.recipient"),
    N_("recipient.column.state"),
    N_("recipient.column.detail"),
)

_AnyIndex = QModelIndex | QPersistentModelIndex


class RecipientTableModel(QAbstractTableModel):
    """Number, recipient, state, detail."""

    STATE_COLUMN: Final = 2

    def __init__(self, translator: Translator, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._tr = translator
        self._recipients: list[str] = []
        self._states: list[str] = []
        self._details: list[str] = []
        self._row_of: dict[str, int] = {}
        self._state_text: dict[str, str] = {}
        self._detail_text: dict[str, str] = {}
        self._retranslate()
        translator.language_changed.connect(self._language_changed)

    # --- content --------------------------------------------------------------------------------

    def set_recipients(self, recipients: Iterable[str]) -> None:
        """A freshly imported list: every recipient ``new``."""
        self.set_rows((r, NEW, "") for r in recipients)

    def set_rows(self, rows: Iterable[RecipientUpdate]) -> None:
        self.beginResetModel()
        self._recipients, self._states, self._details = [], [], []
        for recipient, state, detail in rows:
            self._recipients.append(recipient)
            self._states.append(state)
            self._details.append(detail)
        self._row_of = {r: i for i, r in enumerate(self._recipients)}
        self.endResetModel()

    def set_all_states(self, state: str) -> None:
        """Every row to ``state`` (the broadcast was created: all pending)."""
        if not self._states:
            return
        self._states = [state] * len(self._states)
        self._details = [""] * len(self._details)
        self._changed(0, len(self._states) - 1)

    def apply(self, updates: Sequence[RecipientUpdate]) -> int:
        """Apply a batch of changes; one ``dataChanged`` for all of them. Returns rows changed."""
        low, high, count = len(self._states), -1, 0
        for recipient, state, detail in updates:
            row = self._row_of.get(recipient)
            if row is None:
                continue
            self._states[row] = state
            self._details[row] = detail
            low, high, count = min(low, row), max(high, row), count + 1
        if count:
            self._changed(low, high)
        return count

    def _changed(self, low: int, high: int) -> None:
        self.dataChanged.emit(
            self.index(low, self.STATE_COLUMN), self.index(high, len(_HEADER_KEYS) - 1)
        )

    def recipient_at(self, row: int) -> str:
        return self._recipients[row]

    def state_of(self, recipient: str) -> str | None:
        row = self._row_of.get(recipient)
        return None if row is None else self._states[row]

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for state in self._states:
            counts[state] = counts.get(state, 0) + 1
        return counts

    # --- Qt model -------------------------------------------------------------------------------

    def rowCount(self, parent: _AnyIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._recipients)

    def columnCount(self, parent: _AnyIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(_HEADER_KEYS)

    def data(self, index: _AnyIndex, role: int = Qt.ItemDataRole.DisplayRole) -> object:
        if not index.isValid():
            return None
        row, column = index.row(), index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            if column == 0:
                return row + 1
            if column == 1:
                return self._recipients[row]
            if column == 2:
                state = self._states[row]
                return self._state_text.get(state, state)
            detail = self._details[row]
            known = self._detail_text.get(detail)
            return known if known is not None else telegram_text(detail, self._tr)
        if role == Qt.ItemDataRole.ForegroundRole and column == self.STATE_COLUMN:
            return _STATE_COLOURS.get(self._states[row])
        if role == Qt.ItemDataRole.TextAlignmentRole and column == 0:
            return Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
        return None

    def headerData(
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> object:
        if (
            role == Qt.ItemDataRole.DisplayRole
            and orientation == Qt.Orientation.Horizontal
            and 0 <= section < len(_HEADER_KEYS)
        ):
            return self._tr.tr(_HEADER_KEYS[section])
        return None

    # --- language -------------------------------------------------------------------------------

    def _retranslate(self) -> None:
        self._state_text = {state: self._tr.tr(key) for state, key in _STATE_KEYS.items()}
        self._detail_text = {code: self._tr.tr(key) for code, key in _DETAIL_KEYS.items()}

    def _language_changed(self, _language: str) -> None:
        self._retranslate()
        self.headerDataChanged.emit(Qt.Orientation.Horizontal, 0, len(_HEADER_KEYS) - 1)
        if self._states:
            self._changed(0, len(self._states) - 1)
