"""What a person can read in a window: the text of every visible widget, and the language check.

Used by the one-language test (tests/app/test_one_language.py): in the Russian window no run of
Latin letters that is not a name or a technical token, in the English window no Cyrillic.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from PyQt6.QtCore import QAbstractItemModel, QModelIndex, Qt
from PyQt6.QtWidgets import (
    QAbstractButton,
    QAbstractItemView,
    QComboBox,
    QGroupBox,
    QLabel,
    QLineEdit,
    QListWidget,
    QMainWindow,
    QPlainTextEdit,
    QTabWidget,
    QTextEdit,
    QWidget,
)

#: Names and technical tokens that stay as they are in a Russian sentence.
LATIN_ALLOWED = (
    "TGFlow",
    "Telegram",
    "@SpamBot",
    "SpamBot",
    "FloodWait",
    "PeerFlood",
    "my.telegram.org",
    "t.me",
    "api_id",
    "api_hash",
    "CSV UTF-8",
    "CSV",
    "UTF-8",
    "UTF-16",
    "URL",
    "API",
    "HTTP",
    "https://",
    "http://",
    "SHA-256",
    "sha256",
    "base64url",
    "Excel",
    # Payment providers and ISO 4217 currency codes.
    "Stripe",
    "CloudPayments",
    "USD",
    "EUR",
    "RUB",
    "tgflow-server keys pins",
    "English",
    "e-mail",
    "E-mail",
    "UTC",
    "Enter",
    "Ctrl",
    "ru",
    "en",
    "id",
    "csv",
    "GET",
    "POST",
    "PUT",
    "DELETE",
)
_TOKENS = [
    # Data, not language: links, e-mail addresses, @usernames, paths, an ini [section] key,
    # commands, values quoted back to the user, hexadecimal ids, snake_case names.
    re.compile(r"\b\w+://\S*"),
    # A release's archive (the update notice): tgflow-1.2.0-linux-x86_64.tar.gz.
    re.compile(r"\btgflow-[\w.-]+\.(?:tar\.gz|zip|AppImage|dmg)\b"),
    re.compile(r"\S+@\S+\.\w+"),
    re.compile(r"@\w+"),
    re.compile(r"(?<![\w:])(?:[A-Za-z]:)?[/\\][\w./\\-]+"),
    re.compile(r"\[\w+\](?: \w+)?"),
    re.compile(r"\btgflow(?:-server)?(?: --?[a-z-]+| [a-z-]+)+"),
    re.compile(r"«[^»]*»|'[^']*'|\"[^\"]*\""),
    re.compile(r"\bsession-[\w.-]+"),
    re.compile(r"\*\.\w+"),
    re.compile(r"\b[\w-]+\.(?:csv|txt|tsv|json|html|sqlite|ini)\b"),
    re.compile(r"\b[a-z0-9]+(?:_[a-z0-9]+)+\b"),
    # Telegram's error ids (USER_IS_BLOCKED): stable codes, shown beside their explanation.
    re.compile(r"\b[A-Z0-9]+(?:_[A-Z0-9]+)+\b"),
    re.compile(r"\b[0-9a-f]{8,}\b"),
]
_LATIN_RUN = re.compile(r"[A-Za-z]{2,}")
_CYRILLIC = re.compile(r"[А-Яа-яЁё]")
#: Each language's own name stays in its own language in the language switch.
LANGUAGE_NAMES = ("Русский", "English")


def _plain(text: str) -> str:
    if "<" in text and ">" in text:
        text = re.sub(r"<[^>]+>", " ", text)
    return text.replace("&nbsp;", " ").replace("&amp;", "&").replace("&lt;", "<")


def foreign(text: str, language: str, *, data: Iterable[str] = ()) -> list[str]:
    """The runs of ``text`` that are not in ``language`` (``data`` are the test's own values)."""
    text = _plain(text)
    if language == "en":
        for value in [*sorted(data, key=len, reverse=True), *LANGUAGE_NAMES]:
            if value:
                text = text.replace(value, " ")
        return _CYRILLIC.findall(text)
    for pattern in _TOKENS:
        text = pattern.sub(" ", text)
    for value in sorted(data, key=len, reverse=True):
        if value:
            text = text.replace(value, " ")
    for token in sorted(LATIN_ALLOWED, key=len, reverse=True):
        text = re.sub(rf"(?<![A-Za-z]){re.escape(token)}(?![A-Za-z])", " ", text)
    return _LATIN_RUN.findall(text)


def _model_texts(model: QAbstractItemModel | None) -> Iterator[str]:
    if model is None:
        return
    for orientation in (Qt.Orientation.Horizontal, Qt.Orientation.Vertical):
        count = model.columnCount() if orientation == Qt.Orientation.Horizontal else 0
        for section in range(count):
            header = model.headerData(section, orientation, Qt.ItemDataRole.DisplayRole)
            if header:
                yield str(header)
    for row in range(min(model.rowCount(), 200)):
        for column in range(model.columnCount()):
            index = model.index(row, column, QModelIndex())
            for role in (Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.ToolTipRole):
                value = model.data(index, role)
                if isinstance(value, str) and value:
                    yield value


def widget_texts(root: QWidget) -> Iterator[tuple[str, str]]:
    """``(where, text)`` for every text a person can see in ``root`` and its visible children.

    Text typed by the user (line edits, the message) is not the program's language and is left
    out; placeholders are in.
    """
    widgets = [root, *root.findChildren(QWidget)]
    for widget in widgets:
        if widget is not root and not widget.isVisibleTo(root):
            continue
        if not widget.isVisible():
            continue
        name = f"{type(widget).__name__}#{widget.objectName()}"
        if widget.toolTip():
            yield name + ".toolTip", widget.toolTip()
        if widget.isWindow() and widget.windowTitle():
            yield name + ".windowTitle", widget.windowTitle()
        if isinstance(widget, QLabel | QAbstractButton):
            yield name, widget.text()
        elif isinstance(widget, QGroupBox):
            yield name, widget.title()
        elif isinstance(widget, QLineEdit | QPlainTextEdit):
            yield name + ".placeholder", widget.placeholderText()
        elif isinstance(widget, QTextEdit):
            if widget.isReadOnly():
                yield name, widget.toPlainText()
            else:
                yield name + ".placeholder", widget.placeholderText()
        elif isinstance(widget, QComboBox):
            if widget.isEditable():
                continue
            for index in range(widget.count()):
                yield f"{name}[{index}]", widget.itemText(index)
        elif isinstance(widget, QTabWidget):
            for index in range(widget.count()):
                yield f"{name}.tab[{index}]", widget.tabText(index)
        elif isinstance(widget, QListWidget):
            for index in range(widget.count()):
                item = widget.item(index)
                if item is not None:
                    yield f"{name}[{index}]", item.text()
        elif isinstance(widget, QAbstractItemView):
            for text in _model_texts(widget.model()):
                yield name, text
        if isinstance(widget, QMainWindow):
            bar = widget.menuBar()
            if bar is not None:
                for action in bar.actions():
                    yield name + ".menu", action.text()
                    menu = action.menu()
                    if menu is not None:
                        for sub in menu.actions():
                            yield name + ".menu", sub.text()


def foreign_texts(
    root: QWidget, language: str, *, data: Iterable[str] = ()
) -> list[tuple[str, str, list[str]]]:
    """Every ``(where, text, foreign runs)`` in ``root`` not in ``language``."""
    data = list(data)
    found = []
    for where, text in widget_texts(root):
        runs = foreign(text, language, data=data)
        if runs:
            found.append((where, text, runs))
    return found
