"""The License panel: plan, status, the quota bar, devices, the offline lease, why not usable."""

from __future__ import annotations

from typing import TYPE_CHECKING

from PyQt6.QtCore import Qt
from PyQt6.QtWidgets import (
    QAbstractItemView,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMessageBox,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.i18n import N_, Translator
from app.viewmodels.formatting import format_count, format_datetime
from app.viewmodels.license import LicenseViewModel

from .license_file_box import LicenseFileBox
from .quota_bar import HELD_COLOUR, REMAINING_COLOUR, USED_COLOUR, QuotaBar

if TYPE_CHECKING:
    from app.core import DeviceRow, LicenseSnapshot

_STATUS_KEYS = {
    "active": N_("license.status.active"),
    "inactive": N_("license.status.inactive"),
    "unknown": N_("license.status.unknown"),
}


def _swatch(colour: str) -> str:
    return f'<span style="color:{colour}">■</span>'


class LicensePanel(QWidget):
    def __init__(
        self, model: LicenseViewModel, translator: Translator, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.setObjectName("licensePanel")
        self._vm = model
        self._tr = translator

        # --- summary
        self._summary_box = QGroupBox()
        form = QFormLayout(self._summary_box)
        form.setLabelAlignment(Qt.AlignmentFlag.AlignRight)
        self._labels = {name: QLabel() for name in ("account", "plan", "status", "lease")}
        self.account_value = QLabel()
        self.plan_value = QLabel()
        self.plan_value.setObjectName("emphasis")
        self.status_value = QLabel()
        self.lease_value = QLabel()
        form.addRow(self._labels["account"], self.account_value)
        form.addRow(self._labels["plan"], self.plan_value)
        form.addRow(self._labels["status"], self.status_value)
        form.addRow(self._labels["lease"], self.lease_value)
        self.reason = QLabel()
        self.reason.setObjectName("warning")
        self.reason.setWordWrap(True)
        self.reason.hide()

        # --- license-file mode
        self.file_box = LicenseFileBox(self._vm, translator)

        # --- quota
        self._quota_box = QGroupBox()
        quota = QVBoxLayout(self._quota_box)
        self.quota_bar = QuotaBar()
        self.quota_text = QLabel()
        self.quota_text.setTextFormat(Qt.TextFormat.RichText)
        self.period_end = QLabel()
        self.period_end.setObjectName("hint")
        quota.addWidget(self.quota_bar)
        quota.addWidget(self.quota_text)
        quota.addWidget(self.period_end)

        # --- devices
        self._devices_box = QGroupBox()
        devices = QVBoxLayout(self._devices_box)
        self.devices = QTableWidget(0, 4)
        self.devices.setObjectName("devices")
        self.devices.verticalHeader().setVisible(False)  # type: ignore[union-attr]
        self.devices.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.devices.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        header = self.devices.horizontalHeader()
        assert header is not None
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for column in (1, 2, 3):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        devices.addWidget(self.devices)

        # --- actions
        self.refresh_button = QPushButton()
        self.refresh_button.clicked.connect(self._vm.refresh)
        self.error = QLabel()
        self.error.setObjectName("error")
        self.error.setWordWrap(True)
        self.error.hide()
        actions = QHBoxLayout()
        actions.addWidget(self.error, 1)
        actions.addStretch(0)
        actions.addWidget(self.refresh_button)

        layout = QVBoxLayout(self)
        layout.addWidget(self._summary_box)
        layout.addWidget(self.reason)
        layout.addWidget(self.file_box)
        layout.addWidget(self._quota_box)
        layout.addWidget(self._devices_box, 1)
        # Takes the room of the hidden devices in license-file mode (the boxes keep their height).
        layout.addStretch(0)
        layout.addLayout(actions)

        self._vm.changed.connect(self._show)
        self._vm.failed.connect(self._failed)
        self._vm.busy_changed.connect(lambda busy: self.refresh_button.setEnabled(not busy))
        translator.language_changed.connect(self._retranslate)
        self._retranslate()

    # --- display --------------------------------------------------------------------------------

    def _retranslate(self, _language: str = "") -> None:
        tr = self._tr.tr
        self._summary_box.setTitle(tr("license.summary"))
        self._labels["account"].setText(tr("license.account"))
        self._labels["plan"].setText(tr("license.plan"))
        self._labels["status"].setText(tr("license.status"))
        self._labels["lease"].setText(tr("license.lease"))
        self._quota_box.setTitle(tr("license.quota"))
        self.devices.setHorizontalHeaderLabels(
            [
                tr("license.device.name"),
                tr("license.device.created"),
                tr("license.device.last_seen"),
                "",
            ]
        )
        self.refresh_button.setText(tr("license.refresh"))
        self._show(self._vm.snapshot)

    def _show(self, snapshot: LicenseSnapshot | None) -> None:
        tr = self._tr.tr
        self.error.hide()
        facts = None if snapshot is None else snapshot.license_file
        self.file_box.show_facts(facts)
        self.file_box.show_online(None if snapshot is None else snapshot.online)
        # A license file has no account, devices or lease: those rows would only say "—".
        self._devices_box.setVisible(facts is None)
        for name in ("account", "lease"):
            self._labels[name].setVisible(facts is None)
        self.account_value.setVisible(facts is None)
        self.lease_value.setVisible(facts is None)
        self._quota_box.setTitle(
            self._tr.tr("license_file.quota_month") if facts else self._tr.tr("license.quota")
        )
        if snapshot is None:
            for label in (self.account_value, self.plan_value, self.status_value):
                label.setText("—")
            self.lease_value.setText("—")
            # The window's banner already says "not signed in"; say what will be here instead.
            self.reason.setText(tr("license.after_sign_in"))
            self.reason.show()
            self.quota_bar.set_values(0, 0, 0)
            self.quota_text.setText("")
            self.period_end.setText("")
            self._devices_box.setTitle(tr("license.devices", used=0, max="—"))
            self.devices.setRowCount(0)
            return
        self.account_value.setText(snapshot.email or "—")
        self.plan_value.setText(snapshot.plan or "—")
        status_key = _STATUS_KEYS.get(snapshot.status)
        status = tr(status_key) if status_key else snapshot.status
        if snapshot.offline:
            status = tr("license.offline", status=status)
        self.status_value.setText(status)
        self.status_value.setObjectName("ok" if snapshot.usable else "warning")
        self._repolish(self.status_value)
        self.lease_value.setText(
            tr("license.lease_until", when=format_datetime(snapshot.lease_expires_at, self._tr))
            if snapshot.lease_expires_at is not None
            else tr("license.no_lease")
        )
        if snapshot.usable:
            self.reason.hide()
        else:
            self.reason.setText(tr("license.not_usable", reason=self.reason_text(snapshot)))
            self.reason.show()
        self.quota_bar.set_values(snapshot.used, snapshot.held, snapshot.limit)
        if snapshot.messages_unlimited:
            self.quota_text.setText(
                tr("license.quota.used", count=format_count(snapshot.used, self._tr))
                + "  "
                + tr("license_file.no_limit")
            )
            self.period_end.setText(
                tr("license_file.month_end", when=format_datetime(snapshot.period_end, self._tr))
            )
            return
        self.quota_text.setText(
            "  ".join(
                [
                    _swatch(USED_COLOUR.name())
                    + " "
                    + tr("license.quota.used", count=format_count(snapshot.used, self._tr)),
                    _swatch(HELD_COLOUR.name())
                    + " "
                    + tr("license.quota.held", count=format_count(snapshot.held, self._tr)),
                    _swatch(REMAINING_COLOUR.darker(115).name())
                    + " "
                    + tr(
                        "license.quota.remaining", count=format_count(snapshot.remaining, self._tr)
                    ),
                    tr("license.quota.limit", count=format_count(snapshot.limit, self._tr)),
                ]
            )
        )
        period_key = N_("license_file.month_end") if facts else N_("license.period_end")
        self.period_end.setText(tr(period_key, when=format_datetime(snapshot.period_end, self._tr)))
        if facts is None:
            self._show_devices(snapshot)

    def reason_text(self, snapshot: LicenseSnapshot) -> str:
        """Why the license cannot be used now, in the window's language."""
        tr = self._tr.tr
        if snapshot.offline and snapshot.plan is not None:
            return tr("license.reason.offline")
        if (snapshot.offline or snapshot.license_file is not None) and snapshot.reason:
            return self._tr.reason(snapshot.reason)
        if snapshot.reason is not None and snapshot.status == "inactive" and not snapshot.plan:
            # A kept license file that no longer works: the file's own refusal.
            return self._tr.reason(snapshot.reason)
        if snapshot.status != "active":
            key = _STATUS_KEYS.get(snapshot.status)
            return tr("license.reason.inactive", status=tr(key) if key else snapshot.status)
        if snapshot.remaining <= 0:
            return tr("license.reason.quota")
        return tr("license.reason.unknown")

    def _show_devices(self, snapshot: LicenseSnapshot) -> None:
        tr = self._tr.tr
        self._devices_box.setTitle(
            tr(
                "license.devices",
                used=len(snapshot.devices),
                max=snapshot.devices_max or "—",
            )
        )
        self.devices.setRowCount(len(snapshot.devices))
        for row, device in enumerate(snapshot.devices):
            name = device.name or tr("license.device.unnamed")
            self.devices.setItem(row, 0, QTableWidgetItem(name))
            self.devices.setItem(
                row, 1, QTableWidgetItem(format_datetime(device.created_at, self._tr))
            )
            self.devices.setItem(
                row, 2, QTableWidgetItem(format_datetime(device.last_seen_at, self._tr))
            )
            button = QPushButton(tr("license.device.deactivate"))
            button.setObjectName("deactivate")
            button.clicked.connect(lambda _c=False, d=device: self._confirm_deactivate(d))
            self.devices.setCellWidget(row, 3, button)
        if snapshot.offline:
            self.devices.setRowCount(0)

    def _confirm_deactivate(self, device: DeviceRow) -> None:
        tr = self._tr.tr
        box = QMessageBox(self)
        box.setIcon(QMessageBox.Icon.Question)
        box.setWindowTitle(tr("license.device.deactivate"))
        box.setText(tr("license.device.confirm", name=device.name or device.id))
        box.setStandardButtons(QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)

        def answered(result: int) -> None:
            if result == QMessageBox.StandardButton.Yes:
                self._vm.deactivate_device(device.id)

        box.finished.connect(answered)
        box.open()

    def _failed(self, message: str) -> None:
        self.error.setText(message)
        self.error.show()

    @staticmethod
    def _repolish(widget: QWidget) -> None:
        style = widget.style()
        if style is not None:
            style.unpolish(widget)
            style.polish(widget)
