"""The Accounts panel: each account with its state badge, the actions on it, and adding one."""

from __future__ import annotations

from typing import TYPE_CHECKING

from PyQt6.QtCore import Qt, QTimer
from PyQt6.QtWidgets import (
    QAbstractItemView,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QStackedWidget,
    QTableWidget,
    QTableWidgetItem,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from app.i18n import N_, Translator
from app.ui.error_line import reserve_space
from app.viewmodels.accounts import AccountsViewModel, AddStep, describe_status
from app.viewmodels.telegram_text import telegram_text

from .state_badge import StateBadge

if TYPE_CHECKING:
    from app.core import AccountRow

_KIND_KEYS = {
    "telegram": N_("accounts.kind.telegram"),
    "simulated": N_("accounts.kind.simulated"),
}
_BADGE_COLUMN = 3
_REASON_COLUMN = 4
_STEP_PAGES = {AddStep.CODE: 1, AddStep.CODE_SENT: 1, AddStep.PASSWORD: 2, AddStep.PASSWORD_SENT: 2}


class AccountsPanel(QWidget):
    def __init__(
        self, model: AccountsViewModel, translator: Translator, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.setObjectName("accountsPanel")
        self._vm = model
        self._tr = translator
        self._ids: list[str] = []
        self._spambot: tuple[str, str] | None = None

        # --- the list
        self._list_box = QGroupBox()
        self.table = QTableWidget(0, 5)
        self.table.setObjectName("accounts")
        self.table.verticalHeader().setVisible(False)  # type: ignore[union-attr]
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        header = self.table.horizontalHeader()
        assert header is not None
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.resizeSection(0, 180)
        header.resizeSection(1, 140)
        header.resizeSection(2, 110)
        header.resizeSection(_BADGE_COLUMN, 200)
        header.setStretchLastSection(True)
        self.table.itemSelectionChanged.connect(self._update_buttons)
        self.empty = QLabel()
        self.empty.setObjectName("hint")
        self.reason = QLabel()
        self.reason.setObjectName("warning")
        self.reason.setWordWrap(True)
        self.reason.hide()

        self.spambot_button = QPushButton()
        self.exclude_button = QPushButton()
        self.restore_button = QPushButton()
        self.remove_button = QPushButton()
        self.remove_button.setObjectName("danger")
        self.spambot_button.clicked.connect(self._ask_spambot)
        self.exclude_button.clicked.connect(self._exclude)
        self.restore_button.clicked.connect(self._restore)
        self.remove_button.clicked.connect(self._confirm_remove)
        actions = QHBoxLayout()
        for button in (
            self.spambot_button,
            self.exclude_button,
            self.restore_button,
            self.remove_button,
        ):
            actions.addWidget(button)
        actions.addStretch(1)
        self.spambot_reply = QTextBrowser()
        self.spambot_reply.setObjectName("spambotReply")
        self.spambot_reply.setMaximumHeight(110)
        self.spambot_reply.hide()
        self.error = QLabel()
        self.error.setObjectName("error")
        self.error.setWordWrap(True)
        self.error.hide()

        list_layout = QVBoxLayout(self._list_box)
        list_layout.addWidget(self.table, 1)
        list_layout.addWidget(self.empty)
        list_layout.addWidget(self.reason)
        list_layout.addLayout(actions)
        list_layout.addWidget(self.spambot_reply)
        list_layout.addWidget(reserve_space(self.error))

        # --- adding
        self._add_box = QGroupBox()
        self.add_hint = QLabel()
        self.add_hint.setObjectName("hint")
        self.add_hint.setWordWrap(True)
        self.steps = QStackedWidget()
        self.phone = QLineEdit()
        self.phone.setObjectName("phone")
        self.send_code_button = QPushButton()
        self.send_code_button.setObjectName("primary")
        self.code = QLineEdit()
        self.code.setObjectName("code")
        self.code_button = QPushButton()
        self.code_button.setObjectName("primary")
        self.password = QLineEdit()
        self.password.setObjectName("password")
        self.password.setEchoMode(QLineEdit.EchoMode.Password)
        self.password_hint = QLabel()
        self.password_hint.setObjectName("hint")
        self.password_button = QPushButton()
        self.password_button.setObjectName("primary")
        self.cancel_add_button = QPushButton()
        self.add_error = QLabel()
        self.add_error.setObjectName("error")
        self.add_error.setWordWrap(True)
        self.add_error.hide()
        self.add_status = QLabel()
        self.add_status.setObjectName("hint")

        self._phone_label, self._code_label, self._password_label = QLabel(), QLabel(), QLabel()
        self.steps.addWidget(self._step_page(self._phone_label, self.phone, self.send_code_button))
        self.steps.addWidget(self._step_page(self._code_label, self.code, self.code_button))
        self.steps.addWidget(
            self._step_page(
                self._password_label, self.password, self.password_button, self.password_hint
            )
        )
        add_layout = QVBoxLayout(self._add_box)
        add_layout.addWidget(self.add_hint)
        add_layout.addWidget(self.steps)
        bottom = QHBoxLayout()
        bottom.addWidget(self.add_status, 1)
        bottom.addWidget(self.cancel_add_button)
        add_layout.addLayout(bottom)
        add_layout.addWidget(reserve_space(self.add_error))

        self.send_code_button.clicked.connect(lambda: self._vm.add_start(self.phone.text()))
        self.phone.returnPressed.connect(self.send_code_button.click)
        # Correcting what was refused makes the refusal stale: it goes as the user types.
        for field in (self.phone, self.code, self.password):
            field.textEdited.connect(lambda _text: self.add_error.hide())
        self.code_button.clicked.connect(lambda: self._vm.add_code(self.code.text()))
        self.code.returnPressed.connect(self.code_button.click)
        self.password_button.clicked.connect(lambda: self._vm.add_password(self.password.text()))
        self.password.returnPressed.connect(self.password_button.click)
        self.cancel_add_button.clicked.connect(self._vm.add_cancel)

        layout = QVBoxLayout(self)
        layout.addWidget(self._list_box, 1)
        layout.addWidget(self._add_box)

        # The live countdown of Cooldown badges.
        self._ticker = QTimer(self)
        self._ticker.setInterval(1000)
        self._ticker.timeout.connect(self.tick)
        self._refresh_asked = False

        model.accounts_changed.connect(self._show_rows)
        model.step_changed.connect(self._show_step)
        model.password_requested.connect(self._password_requested)
        model.add_failed.connect(self._add_failed)
        model.account_added.connect(self._account_added)
        model.spambot_reply.connect(self._show_spambot)
        model.failed.connect(self._failed)
        translator.language_changed.connect(self._retranslate)
        self._retranslate()
        self._show_step(model.step)

    @staticmethod
    def _step_page(label: QLabel, edit: QLineEdit, button: QPushButton, *extra: QWidget) -> QWidget:
        page = QWidget()
        form = QFormLayout(page)
        form.setContentsMargins(0, 0, 0, 0)
        row = QHBoxLayout()
        row.addWidget(edit, 1)
        row.addWidget(button)
        form.addRow(label, row)
        for widget in extra:
            form.addRow("", widget)
        return page

    # --- language -------------------------------------------------------------------------------

    def _retranslate(self, _language: str = "") -> None:
        tr = self._tr.tr
        self._list_box.setTitle(tr("accounts.title"))
        self.table.setHorizontalHeaderLabels(
            [
                tr("accounts.column.name"),
                tr("accounts.column.phone"),
                tr("accounts.column.kind"),
                tr("accounts.column.state"),
                tr("accounts.column.reason"),
            ]
        )
        self.empty.setText(tr("accounts.empty"))
        self.spambot_button.setText(tr("accounts.spambot"))
        self.exclude_button.setText(tr("accounts.exclude"))
        self.restore_button.setText(tr("accounts.restore"))
        self.remove_button.setText(tr("accounts.remove"))
        self._add_box.setTitle(tr("accounts.add.title"))
        self.add_hint.setText(
            tr("accounts.add.need_api")
            if self._vm.api_credentials_missing
            else tr("accounts.add.hint")
        )
        self._phone_label.setText(tr("accounts.add.phone"))
        self.phone.setPlaceholderText(tr("accounts.add.phone_placeholder"))
        self.send_code_button.setText(tr("accounts.add.send_code"))
        self._code_label.setText(tr("accounts.add.code"))
        self.code_button.setText(tr("accounts.add.confirm"))
        self._password_label.setText(tr("accounts.add.password"))
        self.password_button.setText(tr("accounts.add.confirm"))
        self.cancel_add_button.setText(tr("accounts.add.cancel"))
        self._show_rows(self._vm.rows)
        self._show_step(self._vm.step)
        if self._spambot is not None:
            self._show_spambot(*self._spambot)

    # --- the list -------------------------------------------------------------------------------

    def selected_id(self) -> str | None:
        rows = {index.row() for index in self.table.selectedIndexes()}
        if len(rows) != 1:
            return None
        row = rows.pop()
        return self._ids[row] if 0 <= row < len(self._ids) else None

    def select(self, account_id: str) -> None:
        if account_id in self._ids:
            self.table.selectRow(self._ids.index(account_id))

    def badge(self, account_id: str) -> StateBadge | None:
        if account_id not in self._ids:
            return None
        widget = self.table.cellWidget(self._ids.index(account_id), _BADGE_COLUMN)
        return widget if isinstance(widget, StateBadge) else None

    def _show_rows(self, rows: list[AccountRow]) -> None:
        selected = self.selected_id()
        ids = [row.info.account_id for row in rows]
        if ids != self._ids:
            self._ids = ids
            self.table.setRowCount(len(rows))
            for index in range(len(rows)):
                self.table.setCellWidget(index, _BADGE_COLUMN, StateBadge())
        tr = self._tr.tr
        for index, row in enumerate(rows):
            info = row.info
            kind_key = _KIND_KEYS.get(info.kind)
            self._set_cell(index, 0, info.display_name)
            self._set_cell(index, 1, "+" + info.account_id)
            self._set_cell(index, 2, tr(kind_key) if kind_key else info.kind)
            self._set_cell(index, _REASON_COLUMN, telegram_text(row.status.reason, self._tr))
        self.empty.setVisible(not rows)
        if selected is not None:
            self.select(selected)
        self._refresh_asked = False
        self.tick()
        self._update_buttons()

    def _set_cell(self, row: int, column: int, text: str) -> None:
        item = self.table.item(row, column)
        if item is None:
            item = QTableWidgetItem(text)
            self.table.setItem(row, column, item)
        elif item.text() != text:
            item.setText(text)
        item.setToolTip(text if column == _REASON_COLUMN else "")

    def tick(self) -> None:
        """Re-draw every badge (the Cooldown countdowns) at the core clock's now."""
        now = self._vm.now()
        cooling = False
        expired = False
        for account_id in self._ids:
            row = self._vm.row(account_id)
            badge = self.badge(account_id)
            if row is None or badge is None:
                continue
            shown = describe_status(row.status, now, self._tr)
            badge.show_state(shown.state, shown.text, shown.tooltip)
            cooling |= shown.state == "cooldown"
            expired |= shown.expired
        if expired and not self._refresh_asked:
            # The core turns an elapsed Cooldown into Active when asked: ask once.
            self._refresh_asked = True
            self._vm.refresh()
        if cooling and not self._ticker.isActive():
            self._ticker.start()
        elif not cooling and self._ticker.isActive():
            self._ticker.stop()
        self._show_reason()

    def _show_reason(self) -> None:
        account_id = self.selected_id()
        row = self._vm.row(account_id) if account_id else None
        reason = row.status.reason if row is not None else ""
        if reason:
            shown = telegram_text(reason, self._tr)
            self.reason.setText(self._tr.tr("accounts.reason", reason=shown))
        self.reason.setVisible(bool(reason))

    def _update_buttons(self) -> None:
        account_id = self.selected_id()
        row = self._vm.row(account_id) if account_id else None
        state = str(row.status.state) if row is not None else ""
        self.spambot_button.setEnabled(row is not None)
        self.remove_button.setEnabled(row is not None)
        self.exclude_button.setEnabled(row is not None and state != "excluded")
        self.restore_button.setEnabled(row is not None and state != "active")
        self._show_reason()

    def _ask_spambot(self) -> None:
        account_id = self.selected_id()
        if account_id is not None:
            self.error.hide()
            self.spambot_reply.setPlainText(self._tr.tr("accounts.spambot.asking"))
            self.spambot_reply.show()
            self._vm.ask_spambot(account_id)

    def _show_spambot(self, account_id: str, text: str) -> None:
        self._spambot = (account_id, text)
        row = self._vm.row(account_id)
        name = row.info.display_name if row is not None else account_id
        self.spambot_reply.setPlainText(
            self._tr.tr("accounts.spambot.reply", name=name) + "\n" + text
        )
        self.spambot_reply.show()

    def _exclude(self) -> None:
        account_id = self.selected_id()
        if account_id is not None:
            self._vm.exclude(account_id)

    def _restore(self) -> None:
        account_id = self.selected_id()
        if account_id is not None:
            self._vm.restore(account_id)

    def _confirm_remove(self) -> None:
        account_id = self.selected_id()
        row = self._vm.row(account_id) if account_id else None
        if account_id is None or row is None:
            return
        tr = self._tr.tr
        box = QMessageBox(self)
        box.setIcon(QMessageBox.Icon.Question)
        box.setWindowTitle(tr("accounts.remove"))
        box.setText(tr("accounts.remove.confirm", name=row.info.display_name))
        box.setStandardButtons(QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)

        def answered(result: int) -> None:
            if result == QMessageBox.StandardButton.Yes:
                self._vm.remove(account_id)

        box.finished.connect(answered)
        box.open()

    def _failed(self, message: str) -> None:
        self.error.setText(message)
        self.error.show()
        if self.spambot_reply.toPlainText() == self._tr.tr("accounts.spambot.asking"):
            self.spambot_reply.hide()

    # --- adding ---------------------------------------------------------------------------------

    def _show_step(self, step: str) -> None:
        self.steps.setCurrentIndex(_STEP_PAGES.get(step, 0))
        busy = step in (AddStep.PHONE_SENT, AddStep.CODE_SENT, AddStep.PASSWORD_SENT)
        for widget in (
            self.phone,
            self.send_code_button,
            self.code,
            self.code_button,
            self.password,
            self.password_button,
        ):
            widget.setEnabled(not busy)
        self.cancel_add_button.setVisible(step != AddStep.IDLE and step != AddStep.PHONE_SENT)
        tr = self._tr.tr
        self.add_status.setText(
            tr("accounts.add.waiting")
            if busy
            else tr("accounts.add.code_sent")
            if step == AddStep.CODE
            else ""
        )
        if busy:
            self.add_error.hide()
        elif step == AddStep.CODE:
            self.code.setFocus()
        elif step == AddStep.IDLE:
            self.code.clear()
            self.password.clear()
            self.password_hint.clear()

    def _password_requested(self, hint: str) -> None:
        self.password_hint.setText(
            self._tr.tr("accounts.add.password_hint", hint=hint) if hint else ""
        )
        self.password.setFocus()

    def _add_failed(self, message: str) -> None:
        self.add_error.setText(message)
        self.add_error.show()

    def _account_added(self, row: AccountRow) -> None:
        self.add_error.hide()
        self.phone.clear()
        self.add_status.setText(self._tr.tr("accounts.add.done", name=row.info.display_name))
        self.select(row.info.account_id)
