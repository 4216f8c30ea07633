"""The License panel's box for an activated license file: customer, product and plan, modules,
limits, validity and grace, file version, the key's last four characters; Replace and Deactivate."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from PyQt6.QtCore import Qt
from PyQt6.QtWidgets import (
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.i18n import N_, Translator
from app.viewmodels.formatting import format_count, format_datetime
from app.viewmodels.license import LicenseViewModel

from .license_file_dialog import choose_license_file

if TYPE_CHECKING:
    from app.core import LicenseFileFacts
    from app.core_types import OnlineStatus

_LIMIT_KEYS = {
    "users": N_("license_file.limit.users"),
    "departments": N_("license_file.limit.departments"),
    "integrations": N_("license_file.limit.integrations"),
    "api_rate": N_("license_file.limit.api_rate"),
    "messages": N_("license_file.limit.messages"),
}
_FIELDS = {
    "customer": N_("license_file.field.customer"),
    "product": N_("license_file.field.product"),
    "modules": N_("license_file.field.modules"),
    "limits": N_("license_file.field.limits"),
    "valid": N_("license_file.field.valid"),
    "version": N_("license_file.field.version"),
    "key": N_("license_file.field.key"),
}


class LicenseFileBox(QGroupBox):
    def __init__(
        self, model: LicenseViewModel, translator: Translator, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.setObjectName("licenseFileBox")
        self._vm = model
        self._tr = translator
        self._facts: LicenseFileFacts | None = None
        self._online: OnlineStatus | None = None
        #: Where "Replace with a newer file…" opens (the demo's folder in the demo).
        self.directory: Path | None = None
        self.confirm: QMessageBox | None = None

        form = QFormLayout()
        form.setLabelAlignment(Qt.AlignmentFlag.AlignRight)
        self._labels = {name: QLabel() for name in _FIELDS}
        self.values = {name: QLabel() for name in _FIELDS}
        for name in _FIELDS:
            self.values[name].setObjectName(f"licenseFile_{name}")
            self.values[name].setWordWrap(True)
            self.values[name].setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            form.addRow(self._labels[name], self.values[name])
        self.grace = QLabel()
        self.grace.setObjectName("warning")
        self.grace.setWordWrap(True)
        self.grace.hide()
        #: "Last checked with the license server …" (hidden without a server).
        self.online = QLabel()
        self.online.setObjectName("licenseOnline")
        self.online.setWordWrap(True)
        self.online.hide()
        #: Why the license server refused this machine's activation (the file works offline).
        self.online_refusal = QLabel()
        self.online_refusal.setObjectName("warning")
        self.online_refusal.setWordWrap(True)
        self.online_refusal.hide()
        self.replace_button = QPushButton()
        self.replace_button.setObjectName("replaceLicenseFile")
        self.replace_button.clicked.connect(self.choose_newer_file)
        self.deactivate_button = QPushButton()
        self.deactivate_button.setObjectName("danger")
        self.deactivate_button.clicked.connect(self.ask_deactivate)
        self.replaced = QLabel()
        self.replaced.setObjectName("ok")
        self.replaced.hide()
        actions = QHBoxLayout()
        actions.addWidget(self.replaced, 1)
        actions.addWidget(self.replace_button)
        actions.addWidget(self.deactivate_button)

        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.grace)
        layout.addWidget(self.online)
        layout.addWidget(self.online_refusal)
        layout.addLayout(actions)

        model.replaced.connect(self._replaced)
        model.busy_changed.connect(self._busy)
        translator.language_changed.connect(self._retranslate)
        self._retranslate()

    def _retranslate(self, _language: str = "") -> None:
        tr = self._tr.tr
        self.setTitle(tr("license_file.box"))
        for name, key in _FIELDS.items():
            self._labels[name].setText(tr(key))
        self.replace_button.setText(tr("license_file.replace"))
        self.deactivate_button.setText(tr("license_file.deactivate"))
        self.replaced.hide()
        self.show_facts(self._facts)
        self.show_online(self._online)

    def show_online(self, status: OnlineStatus | None) -> None:
        """The license server's line: when it last answered, and why it refused."""
        self._online = status
        self.online.setVisible(status is not None)
        self.online_refusal.setVisible(status is not None and status.refusal is not None)
        if status is None:
            return
        tr = self._tr.tr
        self.online.setText(
            tr("license_online.never")
            if status.checked_at is None
            else tr("license_online.checked", when=format_datetime(status.checked_at, self._tr))
        )
        if status.refusal is not None:
            self.online_refusal.setText(self._tr.reason(status.refusal))

    def show_facts(self, facts: LicenseFileFacts | None) -> None:
        self._facts = facts
        self.setVisible(facts is not None)
        if facts is None:
            return
        tr = self._tr.tr
        when = lambda moment: format_datetime(moment, self._tr)  # noqa: E731
        self.values["customer"].setText(facts.customer)
        self.values["product"].setText(
            tr("license_file.product_plan", product=facts.product, plan=facts.plan)
        )
        self.values["modules"].setText(
            "\n".join(f"• {module}" for module in facts.modules)
            if facts.modules
            else tr("license_file.no_modules")
        )
        self.values["limits"].setText(
            "\n".join(
                tr(
                    _LIMIT_KEYS.get(name, name),
                    value=tr("license_file.no_limit")
                    if value is None
                    else format_count(value, self._tr),
                )
                for name, value in facts.limits
            )
        )
        self.values["valid"].setText(
            tr(
                "license_file.valid",
                start=when(facts.valid_from),
                end=when(facts.valid_until),
                grace=when(facts.expires_at),
            )
        )
        self.values["version"].setText(str(facts.file_version))
        self.values["key"].setText(facts.key_tail)
        self.grace.setText(tr("license_file.in_grace", until=when(facts.expires_at)))
        self.grace.setVisible(facts.in_grace)

    def choose_newer_file(self) -> None:
        choose_license_file(self, self._tr, self.directory, self._chosen)

    def _chosen(self, path: str) -> None:
        self.replaced.hide()
        self.directory = Path(path).parent
        self._vm.replace_file(path)

    def _replaced(self, version: int) -> None:
        self.replaced.setText(self._tr.tr("license_file.replaced", version=version))
        self.replaced.show()

    def ask_deactivate(self) -> QMessageBox:
        tr = self._tr.tr
        box = QMessageBox(self)
        box.setObjectName("deactivateLicenseFile")
        box.setIcon(QMessageBox.Icon.Question)
        box.setWindowTitle(tr("license_file.deactivate"))
        box.setText(tr("license_file.deactivate_confirm"))
        box.setStandardButtons(QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No)
        box.setDefaultButton(QMessageBox.StandardButton.No)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)

        def answered(result: int) -> None:
            self.confirm = None
            if result == QMessageBox.StandardButton.Yes:
                self._vm.deactivate()

        box.finished.connect(answered)
        self.confirm = box
        box.open()
        return box

    def _busy(self, busy: bool) -> None:
        self.replace_button.setEnabled(not busy)
        self.deactivate_button.setEnabled(not busy)
