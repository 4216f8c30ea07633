"""An error line that keeps its place: hidden, it still holds the height of one line, so the
buttons next to it do not jump when an error appears under the mouse (or goes away)."""

from __future__ import annotations

from PyQt6.QtCore import QEvent, QObject
from PyQt6.QtWidgets import QLabel


class _OneLine(QObject):
    """Re-measures the line whenever the style sheet or the font changes (the window's style
    sheet is set after the panels are built, and its padding counts in the height)."""

    _EVENTS = frozenset({QEvent.Type.Polish, QEvent.Type.StyleChange, QEvent.Type.FontChange})

    def eventFilter(self, watched: QObject | None, event: QEvent | None) -> bool:
        if isinstance(watched, QLabel) and event is not None and event.type() in self._EVENTS:
            watched.setMinimumHeight(_one_line_height(watched))
        return False


def reserve_space(label: QLabel) -> QLabel:
    """Make ``label`` keep one line's height while hidden or empty; returns it."""
    policy = label.sizePolicy()
    policy.setRetainSizeWhenHidden(True)
    label.setSizePolicy(policy)
    keeper = _OneLine(label)
    label.installEventFilter(keeper)
    label.setMinimumHeight(_one_line_height(label))
    return label


def _one_line_height(label: QLabel) -> int:
    # Measured, not computed: the style sheet's padding and border, and the font, all count.
    text, wrap = label.text(), label.wordWrap()
    label.setWordWrap(False)
    label.setText("X")
    height = label.sizeHint().height()
    label.setText(text)
    label.setWordWrap(wrap)
    return height
