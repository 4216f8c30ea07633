"""Pieces the "Plans & billing" tab builds more than once: its read-only tables and the frame
that shows what an action would do before it is confirmed (a plan change, a points top-up)."""

from __future__ import annotations

from dataclasses import dataclass

from PyQt6.QtWidgets import (
    QAbstractItemView,
    QFrame,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
)


def table(columns: int, name: str, stretch: int) -> QTableWidget:
    """A read-only table of ``columns`` sized to their contents, column ``stretch`` filling."""
    widget = QTableWidget(0, columns)
    widget.setObjectName(name)
    widget.verticalHeader().setVisible(False)  # type: ignore[union-attr]
    widget.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    header = widget.horizontalHeader()
    assert header is not None
    header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    header.setSectionResizeMode(stretch, QHeaderView.ResizeMode.Stretch)
    return widget


def fit_rows(widget: QTableWidget) -> None:
    """As tall as its rows (a few plans): nothing to scroll to."""
    header = widget.horizontalHeader()
    rows = sum(widget.rowHeight(row) for row in range(widget.rowCount()))
    extra = 2 * widget.frameWidth() + (0 if header is None else header.height())
    widget.setFixedHeight(rows + extra)


@dataclass(frozen=True)
class ConfirmFrame:
    """What an action would do (``text``), with Confirm and Back; hidden until asked."""

    frame: QFrame
    text: QLabel
    confirm: QPushButton
    back: QPushButton


def confirm_frame(name: str) -> ConfirmFrame:
    frame = QFrame()
    frame.setObjectName(name)
    frame.setFrameShape(QFrame.Shape.StyledPanel)
    text = QLabel()
    text.setWordWrap(True)
    confirm = QPushButton()
    confirm.setObjectName("primary")
    back = QPushButton()
    row = QHBoxLayout(frame)
    row.addWidget(text, 1)
    row.addWidget(confirm)
    row.addWidget(back)
    frame.hide()
    return ConfirmFrame(frame, text, confirm, back)
