"""A small coloured label naming a state; ``resources/style.qss`` colours it by ``state``."""

from __future__ import annotations

from PyQt6.QtCore import Qt
from PyQt6.QtWidgets import QLabel, QWidget


class StateBadge(QLabel):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("badge")
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self._state = ""

    @property
    def state(self) -> str:
        return self._state

    def show_state(self, state: str, text: str, tooltip: str = "") -> None:
        if self.text() != text:
            self.setText(text)
        if self.toolTip() != tooltip:
            self.setToolTip(tooltip)
        if state != self._state:
            self._state = state
            self.setProperty("state", state)
            style = self.style()
            if style is not None:
                style.unpolish(self)
                style.polish(self)
