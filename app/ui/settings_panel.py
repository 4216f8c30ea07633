"""The Settings panel: a form for every key of settings.ini. Save validates the whole file first;
a bad value is shown with the file, the key and the reason, and the file stays as it was."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from PyQt6.QtCore import Qt
from PyQt6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from app.i18n import LANGUAGES, N_, Translator
from app.settings_schema import Kind
from app.viewmodels.settings import FIELDS, SECTION_LABELS, Field, Key, SettingsViewModel

#: Each language by its own name (the same in every language).
LANGUAGE_NAMES = {"ru": N_("language.ru"), "en": N_("language.en")}

#: Tick boxes whose explanation depends on the tick: (when ticked, when not).
STATE_HELP: dict[Key, tuple[str, str]] = {
    ("anti_spam", "enabled"): (
        N_("settings.anti_spam.enabled.help_on"),
        N_("settings.anti_spam.enabled.help"),
    ),
}


class SettingsPanel(QWidget):
    def __init__(
        self, model: SettingsViewModel, translator: Translator, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.setObjectName("settingsPanel")
        self._vm = model
        self._tr = translator
        self.editors: dict[Key, QLineEdit | QCheckBox | QComboBox] = {}
        self._labels: dict[Key, QLabel] = {}
        self._boxes: dict[str, QGroupBox] = {}
        self._help: dict[Key, QLabel] = {}

        self.file_label = QLabel()
        self.file_label.setObjectName("hint")
        self.file_label.setWordWrap(True)
        self.file_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.server_label = QLabel()
        self.server_label.setObjectName("hint")
        self.server_label.setWordWrap(True)
        self.server_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.server_label.setVisible(bool(model.server_in_use))

        form_host = QWidget()
        form_layout = QVBoxLayout(form_host)
        forms: dict[str, QFormLayout] = {}
        for field in FIELDS:
            if field.section not in forms:
                box = QGroupBox()
                self._boxes[field.section] = box
                forms[field.section] = QFormLayout(box)
                forms[field.section].setLabelAlignment(Qt.AlignmentFlag.AlignRight)
                form_layout.addWidget(box)
            editor = self._editor(field)
            label = QLabel()
            helptext = QLabel()
            helptext.setObjectName("hint")
            helptext.setWordWrap(True)
            cell = QVBoxLayout()
            cell.setSpacing(2)
            cell.addWidget(
                editor,
                0,
                Qt.AlignmentFlag.AlignLeft if field.kind == Kind.NUMBER else Qt.AlignmentFlag(0),
            )
            cell.addWidget(helptext)
            self.editors[field.id] = editor
            self._labels[field.id] = label
            self._help[field.id] = helptext
            forms[field.section].addRow(label, cell)
        form_layout.addStretch(1)
        self._scroll = scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        scroll.setWidget(form_host)

        self.error = QLabel()
        self.error.setObjectName("error")
        self.error.setWordWrap(True)
        self.error.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.error.hide()
        self.status = QLabel()
        self.status.setObjectName("hint")
        self.status.setWordWrap(True)
        self.save_button = QPushButton()
        self.save_button.setObjectName("primary")
        self.revert_button = QPushButton()
        buttons = QHBoxLayout()
        buttons.addWidget(self.status, 1)
        buttons.addWidget(self.revert_button)
        buttons.addWidget(self.save_button)

        layout = QVBoxLayout(self)
        layout.addWidget(self.file_label)
        layout.addWidget(self.server_label)
        layout.addWidget(scroll, 1)
        layout.addWidget(self.error)
        layout.addLayout(buttons)

        self.save_button.clicked.connect(self.save)
        self.revert_button.clicked.connect(self._revert)
        model.loaded.connect(self._show_values)
        model.saved.connect(self._saved)
        model.failed.connect(self._failed)
        model.invalid.connect(self._mark_invalid)
        model.busy_changed.connect(lambda busy: self.save_button.setEnabled(not busy))
        translator.language_changed.connect(self._retranslate)
        for key, editor in self.editors.items():
            self._on_edit(editor, partial(self._edited, key))
        self._retranslate()
        self._show_values(model.values)

    @staticmethod
    def _on_edit(editor: QLineEdit | QCheckBox | QComboBox, slot: Callable[[], None]) -> None:
        if isinstance(editor, QCheckBox):
            editor.toggled.connect(lambda _checked: slot())
        elif isinstance(editor, QComboBox):
            editor.currentIndexChanged.connect(lambda _index: slot())
        else:
            editor.textChanged.connect(lambda _text: slot())

    def _edited(self, key: Key) -> None:
        """An edit answers the warning about its own field: clear that (and the message once no
        field is marked), so nothing stale stays on screen."""
        editor = self.editors[key]
        if key in STATE_HELP:
            self._show_help(key)
        if editor.property("invalid"):
            self._set_invalid(editor, False)
            if not any(e.property("invalid") for e in self.editors.values()):
                self.error.hide()
                self.status.setText("")

    def _show_help(self, key: Key) -> None:
        editor = self.editors[key]
        on, off = STATE_HELP[key]
        ticked = isinstance(editor, QCheckBox) and editor.isChecked()
        self._help[key].setText(self._tr.tr(on if ticked else off))

    @staticmethod
    def _set_invalid(editor: QWidget, bad: bool) -> None:
        if bool(editor.property("invalid")) != bad:
            editor.setProperty("invalid", bad)
            style = editor.style()
            if style is not None:
                style.unpolish(editor)
                style.polish(editor)

    @staticmethod
    def _editor(field: Field) -> QLineEdit | QCheckBox | QComboBox:
        name = f"{field.section}.{field.key}"
        editor: QLineEdit | QCheckBox | QComboBox
        if field.kind == Kind.BOOL:
            editor = QCheckBox()
        elif field.kind == Kind.LANGUAGE:
            editor = QComboBox()
            for language in LANGUAGES:
                editor.addItem(language, language)
        else:
            editor = QLineEdit()
            if field.kind == Kind.SECRET:
                editor.setEchoMode(QLineEdit.EchoMode.PasswordEchoOnEdit)
            if field.kind == Kind.NUMBER:
                editor.setMaximumWidth(160)
        editor.setObjectName(name)
        return editor

    def _retranslate(self, _language: str = "") -> None:
        tr = self._tr.tr
        for section, box in self._boxes.items():
            box.setTitle(f"{tr(SECTION_LABELS[section])}  [{section}]")
        for field in FIELDS:
            label = self._labels[field.id]
            label.setText(tr(field.label))
            if field.id in STATE_HELP:
                self._show_help(field.id)
            else:
                self._help[field.id].setText(tr(field.help))
            self.editors[field.id].setToolTip(f"[{field.section}] {field.key}")
            editor = self.editors[field.id]
            if isinstance(editor, QComboBox):
                for index in range(editor.count()):
                    editor.setItemText(index, tr(LANGUAGE_NAMES[str(editor.itemData(index))]))
        self.file_label.setText(tr("settings.file", path=str(self._vm.path)))
        server = self._vm.server_in_use
        self.server_label.setText(
            tr("settings.server_in_use.demo", url=server)
            if self._vm.embedded_server
            else tr("settings.server_in_use", url=server)
        )
        self.save_button.setText(tr("settings.save"))
        self.revert_button.setText(tr("settings.revert"))

    # --- values ---------------------------------------------------------------------------------

    def form_values(self) -> dict[Key, str]:
        """What the form holds, as settings.ini text."""
        values: dict[Key, str] = {}
        for key, editor in self.editors.items():
            if isinstance(editor, QCheckBox):
                values[key] = "true" if editor.isChecked() else "false"
            elif isinstance(editor, QComboBox):
                values[key] = str(editor.currentData())
            else:
                values[key] = editor.text().strip()
        return values

    def set_value(self, key: Key, value: str) -> None:
        editor = self.editors[key]
        if isinstance(editor, QCheckBox):
            editor.setChecked(value.lower() in ("true", "1", "yes", "on"))
        elif isinstance(editor, QComboBox):
            editor.setCurrentIndex(max(0, editor.findData(value)))
        else:
            editor.setText(value)

    def _show_values(self, values: dict[Key, str]) -> None:
        for key, value in values.items():
            if key in self.editors:
                self.set_value(key, value)

    def save(self) -> None:
        self.error.hide()
        self.status.setText(self._tr.tr("settings.saving"))
        self._vm.save(self.form_values())

    def _revert(self) -> None:
        self.error.hide()
        self.status.setText("")
        self._show_values(self._vm.values)

    def _saved(self, changes: dict[Key, str]) -> None:
        tr = self._tr.tr
        self._mark_invalid([])  # whatever was wrong before is fixed now
        self.error.hide()
        for key, value in changes.items():
            if key in self.editors:
                self.set_value(key, value)
        if not changes:
            self.status.setText(tr("settings.unchanged"))
        elif self._vm.needs_restart(changes):
            self.status.setText(tr("settings.saved_restart"))
        else:
            self.status.setText(tr("settings.saved"))

    def _mark_invalid(self, keys: list[Key]) -> None:
        for key, editor in self.editors.items():
            self._set_invalid(editor, key in keys)
        first = next((self.editors[k] for k in keys if k in self.editors), None)
        if first is not None:
            # Room for its label and explanation too, not just the field itself.
            self._scroll.ensureWidgetVisible(first, 50, 80)
            first.setFocus()

    def _failed(self, message: str) -> None:
        self.status.setText(self._tr.tr("settings.not_saved"))
        self.error.setText(message)
        self.error.show()
