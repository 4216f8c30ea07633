"""A bar in three parts: messages used, held by running broadcasts, and remaining."""

from __future__ import annotations

from typing import Final

from PyQt6.QtCore import QRectF, QSize, Qt
from PyQt6.QtGui import QColor, QPainter, QPainterPath, QPaintEvent
from PyQt6.QtWidgets import QSizePolicy, QWidget

USED_COLOUR: Final = QColor("#3f6fb5")
HELD_COLOUR: Final = QColor("#e0a93b")
REMAINING_COLOUR: Final = QColor("#dfe6ee")


class QuotaBar(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._used = self._held = self._limit = 0
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setMinimumHeight(18)

    def set_values(self, used: int, held: int, limit: int) -> None:
        self._used, self._held, self._limit = max(0, used), max(0, held), max(0, limit)
        self.update()

    def values(self) -> tuple[int, int, int]:
        return self._used, self._held, self._limit

    def sizeHint(self) -> QSize:
        return QSize(320, 18)

    def paintEvent(self, event: QPaintEvent | None) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        rect = QRectF(self.rect()).adjusted(0.5, 0.5, -0.5, -0.5)
        clip = QPainterPath()
        clip.addRoundedRect(rect, 6, 6)
        painter.setClipPath(clip)
        painter.fillRect(rect, REMAINING_COLOUR)
        if self._limit > 0:
            width = rect.width()
            used_w = width * min(self._used, self._limit) / self._limit
            held_w = width * min(self._held, self._limit - min(self._used, self._limit))
            held_w /= self._limit
            painter.fillRect(QRectF(rect.left(), rect.top(), used_w, rect.height()), USED_COLOUR)
            painter.fillRect(
                QRectF(rect.left() + used_w, rect.top(), held_w, rect.height()), HELD_COLOUR
            )
        painter.setClipping(False)
        painter.setPen(QColor("#b8c2cc"))
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.drawRoundedRect(rect, 6, 6)
        painter.end()
