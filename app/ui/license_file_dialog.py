"""Activating a license file (offline), beside the e-mail sign-in.

The user chooses the file (.lic / .txt) and types the license key, which opens an encrypted file
and binds the file to the key; it is masked unless "Show" is ticked. The activation runs on the
engine (:meth:`SessionViewModel.activate_file`); the dialog closes when the session is active and
shows the refusal otherwise.
"""

from __future__ import annotations

from pathlib import Path

from PyQt6.QtCore import Qt
from PyQt6.QtWidgets import (
    QCheckBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QWidget,
)

from app.i18n import Translator
from app.viewmodels.session import SessionViewModel

from .session_dialog import SessionDialog


def choose_license_file(
    parent: QWidget, translator: Translator, directory: Path | None, chosen: object
) -> QFileDialog:
    """Open (window-modal) a file dialog for a license file; ``chosen(path)`` on a choice."""
    tr = translator.tr
    dialog = QFileDialog(parent, tr("license_file.choose_title"))
    dialog.setObjectName("licenseFileChooser")
    dialog.setFileMode(QFileDialog.FileMode.ExistingFile)
    if directory is not None:
        dialog.setDirectory(str(directory))
    dialog.setNameFilters([tr("license_file.filter"), tr("license_file.filter_all")])
    dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    dialog.fileSelected.connect(chosen)  # type: ignore[arg-type]
    dialog.open()
    return dialog


class LicenseFileDialog(SessionDialog):
    def __init__(
        self,
        session: SessionViewModel,
        translator: Translator,
        parent: QWidget | None = None,
        *,
        directory: Path | None = None,
        demo_file: tuple[Path, str] | None = None,
    ) -> None:
        super().__init__(session, translator, parent, demo=demo_file is not None)
        self.setObjectName("licenseFileDialog")
        #: Where the file chooser opens (the demo's folder in the demo).
        self.directory = directory
        self._demo_file = demo_file

        self.path = QLineEdit()
        self.path.setObjectName("licenseFilePath")
        self.browse_button = QPushButton()
        self.browse_button.setObjectName("browse")
        self.browse_button.setAutoDefault(False)
        path_row = QHBoxLayout()
        path_row.addWidget(self.path, 1)
        path_row.addWidget(self.browse_button)
        self.key = QLineEdit()
        self.key.setObjectName("licenseKey")
        self.key.setEchoMode(QLineEdit.EchoMode.Password)
        self.show_key = QCheckBox()
        self.show_key.setObjectName("showKey")
        self.show_key.toggled.connect(self._show_key)
        key_row = QHBoxLayout()
        key_row.addWidget(self.key, 1)
        key_row.addWidget(self.show_key)
        self.activate_button = self.primary_button

        form = QFormLayout()
        self._path_label = QLabel()
        self._key_label = QLabel()
        form.addRow(self._path_label, path_row)
        form.addRow(self._key_label, key_row)
        self._lay_out(form, minimum_width=520)

        self.browse_button.clicked.connect(self.choose_file)
        self.activate_button.clicked.connect(self._submit)
        session.busy_changed.connect(self._busy)
        session.activation_failed.connect(self.show_error)
        session.signed_in.connect(self._activated)
        translator.language_changed.connect(self._retranslate)
        self._retranslate()
        self.reset_fields()

    def _retranslate(self, _language: str = "") -> None:
        tr = self._tr.tr
        self.setWindowTitle(tr("license_file.window_title"))
        self._title.setText(tr("license_file.title"))
        self._intro.setText(tr("license_file.intro"))
        self.demo_note.setText(tr("license_file.demo_note"))
        self._path_label.setText(tr("license_file.file"))
        self._key_label.setText(tr("license_file.key"))
        self.path.setPlaceholderText(tr("license_file.file_placeholder"))
        self.key.setPlaceholderText(tr("license_file.key_placeholder"))
        self.browse_button.setText(tr("license_file.browse"))
        self.show_key.setText(tr("license_file.show_key"))
        self.activate_button.setText(tr("license_file.activate"))
        self.cancel_button.setText(tr("login.cancel"))
        self._busy(self._session.busy)

    def reset_fields(self) -> None:
        """Start afresh: the demo's file and key again in the demo, else nothing typed."""
        if self._demo_file is not None:
            path, key = self._demo_file
            self.path.setText(str(path))
            self.key.setText(key)
        else:
            self.key.clear()
        self.show_key.setChecked(self._demo_file is not None)
        self.show_error("")

    def reject(self) -> None:
        self.reset_fields()
        super().reject()

    def choose_file(self) -> QFileDialog:
        return choose_license_file(self, self._tr, self.directory, self._chosen)

    def _chosen(self, path: str) -> None:
        self.path.setText(path)
        self.directory = Path(path).parent
        self.key.setFocus()

    def _show_key(self, shown: bool) -> None:
        self.key.setEchoMode(QLineEdit.EchoMode.Normal if shown else QLineEdit.EchoMode.Password)

    def _submit(self) -> None:
        if self._session.busy:
            return
        self.show_error("")
        self._session.activate_file(self.path.text(), self.key.text())

    def _busy(self, busy: bool) -> None:
        for widget in (self.activate_button, self.path, self.key, self.browse_button):
            widget.setEnabled(not busy)
        self.status.setText(self._tr.tr("license_file.activating") if busy else "")

    def _activated(self, _snapshot: object) -> None:
        # The typed key is not kept in the widget once the file is active.
        self.reset_fields()
        if self.isVisible():
            self.accept()
