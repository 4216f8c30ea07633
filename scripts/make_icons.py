"""Draw TGFlow's program icon into resources/icons/ (PNG for the window, ICO for the Windows
executable, ICNS for the macOS app; build/tgflow.spec picks the latter two up).

    QT_QPA_PLATFORM=offscreen python scripts/make_icons.py

Geometric only (no font), so it draws the same on every machine; run it again after changing it.
"""

from __future__ import annotations

import sys
from pathlib import Path

from PyQt6.QtCore import QPointF, QRectF, Qt
from PyQt6.QtGui import QColor, QGuiApplication, QImage, QLinearGradient, QPainter, QPolygonF

ICONS = Path(__file__).resolve().parents[1] / "resources" / "icons"


def draw(size: int) -> QImage:
    """A blue rounded square with a white paper plane (a broadcast going out)."""
    image = QImage(size, size, QImage.Format.Format_ARGB32)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    gradient = QLinearGradient(0, 0, 0, size)
    gradient.setColorAt(0, QColor("#3b8fe8"))
    gradient.setColorAt(1, QColor("#1f5fbf"))
    painter.setBrush(gradient)
    painter.setPen(Qt.PenStyle.NoPen)
    margin = size * 0.04
    painter.drawRoundedRect(
        QRectF(margin, margin, size - 2 * margin, size - 2 * margin), size * 0.2, size * 0.2
    )

    def plane(*points: tuple[float, float]) -> QPolygonF:
        return QPolygonF([QPointF(x * size, y * size) for x, y in points])

    painter.setBrush(QColor("#ffffff"))
    painter.drawPolygon(plane((0.2, 0.48), (0.8, 0.24), (0.66, 0.78), (0.47, 0.62)))
    painter.setBrush(QColor("#d4e4f7"))
    painter.drawPolygon(plane((0.47, 0.62), (0.8, 0.24), (0.42, 0.76)))
    painter.end()
    return image


def main() -> int:
    app = QGuiApplication(sys.argv[:1])
    ICONS.mkdir(parents=True, exist_ok=True)
    written = [
        draw(256).save(str(ICONS / "tgflow.png")),
        draw(256).save(str(ICONS / "tgflow.ico")),
        draw(512).save(str(ICONS / "tgflow.icns")),
    ]
    del app
    return 0 if all(written) else 1


if __name__ == "__main__":
    sys.exit(main())
