"""The Broadcast panel: recipients (with the opt-in confirmation), message, account, pacing,
start / pause / resume / stop, live counters, notices and the per-recipient status table."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from PyQt6.QtCore import Qt
from PyQt6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QPlainTextEdit,
    QPushButton,
    QScrollArea,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from app.i18n import Translator
from app.transports.base import MAX_MESSAGE_LENGTH, message_length
from app.ui.error_line import reserve_space
from app.viewmodels.accounts import AccountsViewModel, describe_status
from app.viewmodels.broadcast import BroadcastSession
from app.viewmodels.formatting import format_count, format_datetime, format_duration
from app.viewmodels.license import LicenseViewModel

from .broadcast_progress import ProgressView
from .delivery_guard import RepeatChoice, SuppressionBox

if TYPE_CHECKING:
    from app.broadcast import Progress
    from app.broadcast_store import Broadcast
    from app.core import AccountRow
    from app.recipients import RecipientImport


class BroadcastPanel(QWidget):
    def __init__(
        self,
        session: BroadcastSession,
        accounts: AccountsViewModel,
        license_model: LicenseViewModel,
        translator: Translator,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("broadcastPanel")
        self._vm = session
        self._accounts = accounts
        self._license = license_model
        self._tr = translator
        self._broadcasts: list[Broadcast] = []
        #: Where the file dialog opens (the demo points it at its recipients file).
        self._file_directory: Path | None = None

        # --- 1. recipients
        self._recipients_box = QGroupBox()
        self.import_file_button = QPushButton()
        self.import_text_button = QPushButton()
        self.paste = QPlainTextEdit()
        self.paste.setObjectName("paste")
        # Two lines and a half: at 1024×768 the message box below must still fit in view (a
        # pasted list scrolls inside the box; the import summary says how many were read).
        self.paste.setFixedHeight(52)
        self.import_summary = QLabel()
        self.import_summary.setWordWrap(True)
        self.import_errors = QListWidget()
        self.import_errors.setObjectName("importErrors")
        self.import_errors.setFixedHeight(96)
        self.import_errors.setWordWrap(True)
        self.import_errors.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.import_errors.hide()
        self.opt_in = QCheckBox()
        self.opt_in.setObjectName("optIn")
        self.opt_in_hint = QLabel()
        self.opt_in_hint.setObjectName("hint")
        self.opt_in_hint.setWordWrap(True)
        file_row = QHBoxLayout()
        file_row.addWidget(self.import_file_button)
        file_row.addStretch(1)
        paste_row = QHBoxLayout()
        paste_row.addStretch(1)
        paste_row.addWidget(self.import_text_button)
        box = QVBoxLayout(self._recipients_box)
        box.addLayout(file_row)
        box.addWidget(self.paste)
        box.addLayout(paste_row)
        box.addWidget(self.import_summary)
        box.addWidget(self.import_errors)
        box.addWidget(self.opt_in)
        box.addWidget(self.opt_in_hint)

        # --- 2. message
        self._message_box = QGroupBox()
        self.message = QPlainTextEdit()
        self.message.setObjectName("message")
        self.message.setFixedHeight(80)
        self._preview_label = QLabel()
        self._preview_label.setObjectName("hint")
        self.preview = QLabel()
        self.preview.setObjectName("preview")
        self.preview.setTextFormat(Qt.TextFormat.PlainText)
        self.preview.setWordWrap(True)
        self.preview.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
        self.char_count = QLabel()
        self.char_count.setObjectName("hint")
        self.char_count.setAlignment(Qt.AlignmentFlag.AlignRight)
        box = QVBoxLayout(self._message_box)
        box.addWidget(self.message)
        box.addWidget(self._preview_label)
        box.addWidget(self.preview)
        box.addWidget(self.char_count)

        # --- 3. sending
        self._sending_box = QGroupBox()
        self.account = QComboBox()
        self.account.setObjectName("account")
        self.pacing = QLabel()
        self.pacing.setWordWrap(True)
        self.earlier = QComboBox()
        self.earlier.setObjectName("earlier")
        self.continue_button = QPushButton()
        earlier_row = QHBoxLayout()
        earlier_row.addWidget(self.earlier, 1)
        earlier_row.addWidget(self.continue_button)
        self._account_label, self._pacing_label, self._earlier_label = QLabel(), QLabel(), QLabel()
        form = QFormLayout(self._sending_box)
        form.addRow(self._account_label, self.account)
        form.addRow(self._pacing_label, self.pacing)
        form.addRow(self._earlier_label, earlier_row)

        self.start_button = QPushButton()
        self.start_button.setObjectName("primary")
        self.pause_button = QPushButton()
        self.stop_button = QPushButton()
        self.stop_button.setObjectName("danger")
        controls = QHBoxLayout()
        controls.addWidget(self.start_button)
        controls.addWidget(self.pause_button)
        controls.addWidget(self.stop_button)
        controls.addStretch(1)
        self.repeat = RepeatChoice(translator)
        self.error = QLabel()
        self.error.setObjectName("error")
        self.error.setWordWrap(True)
        self.error.hide()

        setup = QWidget()
        setup_layout = QVBoxLayout(setup)
        setup_layout.setContentsMargins(0, 0, 6, 0)
        setup_layout.addWidget(self._recipients_box)
        setup_layout.addWidget(self._message_box)
        self.suppression = SuppressionBox(session.suppression, translator)
        setup_layout.addWidget(self.suppression)
        setup_layout.addStretch(1)

        # --- progress and the per-recipient table (broadcast_progress); its widgets are named
        # on the panel as well, where the tests and the main window look for them.
        self.watch = ProgressView(session, translator)
        self.state = self.watch.state
        self.progress_bar = self.watch.progress_bar
        self.counters = self.watch.counters
        self.notices = self.watch.notices
        self.table_model = self.watch.table_model
        self.table = self.watch.table
        self.suppress_action = self.watch.suppress_action

        setup_scroll = QScrollArea()
        setup_scroll.setWidgetResizable(True)
        setup_scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        setup_scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        setup_scroll.setWidget(setup)
        setup_scroll.setMinimumWidth(setup.minimumSizeHint().width() + 16)
        # The account, the pacing and the buttons stay in view however long the list above.
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.addWidget(setup_scroll, 1)
        left_layout.addWidget(self._sending_box)
        left_layout.addLayout(controls)
        left_layout.addWidget(self.repeat)
        left_layout.addWidget(reserve_space(self.error))  # Start/Pause/Stop stay put
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(left)
        splitter.addWidget(self.watch)
        splitter.setStretchFactor(0, 0)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([480, 620])
        layout = QVBoxLayout(self)
        layout.addWidget(splitter)

        # --- wiring
        self.import_file_button.clicked.connect(self._choose_file)
        self.import_text_button.clicked.connect(self._import_pasted)
        self.opt_in.toggled.connect(session.set_opted_in)
        self.message.textChanged.connect(self._message_changed)
        self.start_button.clicked.connect(lambda: self._start())
        self.pause_button.clicked.connect(self._pause_or_resume)
        self.stop_button.clicked.connect(session.stop)
        self.continue_button.clicked.connect(self._continue)
        self.repeat.chosen.connect(self._start_chosen)

        session.imported.connect(self._imported)
        session.import_failed.connect(self._import_failed)
        session.opt_in_changed.connect(self._opt_in_changed)
        session.finished.connect(self._finished)
        session.failed.connect(self.show_error)
        session.state_changed.connect(self._update_controls)
        session.broadcasts_changed.connect(self._show_broadcasts)
        session.repeat_found.connect(self.repeat.ask)
        accounts.accounts_changed.connect(self._show_accounts)
        license_model.changed.connect(self.watch.show_license)
        translator.language_changed.connect(self._retranslate)
        self._retranslate()

    # --- language -------------------------------------------------------------------------------

    def _retranslate(self, _language: str = "") -> None:
        tr = self._tr.tr
        self._recipients_box.setTitle(tr("broadcast.recipients"))
        self.import_file_button.setText(tr("broadcast.import_file"))
        self.import_text_button.setText(tr("broadcast.import_text"))
        self.paste.setPlaceholderText(tr("broadcast.paste_placeholder"))
        self.opt_in.setText(tr("broadcast.opt_in"))
        self.opt_in_hint.setText(tr("broadcast.opt_in_hint"))
        self._message_box.setTitle(tr("broadcast.message"))
        self.message.setPlaceholderText(tr("broadcast.message_placeholder"))
        self._preview_label.setText(tr("broadcast.preview"))
        self._sending_box.setTitle(tr("broadcast.sending"))
        self._account_label.setText(tr("broadcast.account"))
        self._pacing_label.setText(tr("broadcast.pacing"))
        self._earlier_label.setText(tr("broadcast.earlier"))
        self.continue_button.setText(tr("broadcast.continue"))
        self.start_button.setText(tr("broadcast.start"))
        self.stop_button.setText(tr("broadcast.stop"))
        last = self._vm.last_import
        if last is not None:
            self._show_import(last)
        else:
            self.import_summary.setText(tr("broadcast.import.none"))
        self._message_changed()
        self._show_accounts(self._accounts.rows)
        self._show_broadcasts(self._broadcasts)
        self._show_pacing()
        self.watch.retranslate()
        self._update_controls()

    # --- recipients -----------------------------------------------------------------------------

    @property
    def file_directory(self) -> Path | None:
        return self._file_directory

    def set_file_directory(self, directory: Path) -> None:
        """Open the file dialog in ``directory`` (the demo's recipients are there)."""
        self._file_directory = directory

    def _choose_file(self) -> None:
        dialog = QFileDialog(self, self._tr.tr("broadcast.import_file"))
        dialog.setFileMode(QFileDialog.FileMode.ExistingFile)
        if self._file_directory is not None:
            dialog.setDirectory(str(self._file_directory))
        dialog.setNameFilters(
            [self._tr.tr("broadcast.file_filter"), self._tr.tr("broadcast.file_filter_all")]
        )
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.fileSelected.connect(self.import_file)
        dialog.open()

    def import_file(self, path: str | Path) -> None:
        self.error.hide()
        self.import_summary.setText(self._tr.tr("broadcast.import.reading"))
        self._vm.import_file(path)

    def _import_pasted(self) -> None:
        self.error.hide()
        self._vm.import_text(self.paste.toPlainText())

    def _imported(self, result: RecipientImport) -> None:
        self.repeat.dismiss()
        self.watch.show_imported(result.recipients)
        self._show_import(result)
        self._show_pacing()
        self.watch.show_state()

    def _show_import(self, result: RecipientImport) -> None:
        tr = self._tr.tr
        errors = len(result.errors) + result.unlisted_errors
        summary = tr(
            "broadcast.import.summary",
            count=format_count(len(result.recipients), self._tr),
            duplicates=format_count(result.duplicates, self._tr),
            errors=format_count(errors, self._tr),
        )
        if result.opted_out:
            summary += " " + tr(
                "broadcast.import.opted_out", count=format_count(len(result.opted_out), self._tr)
            )
        self.import_summary.setText(summary)
        self.import_errors.clear()
        self.import_errors.addItems(
            [
                tr(
                    "broadcast.import.error",
                    line=p.line,
                    value=p.value,
                    reason=tr(p.key, **p.params),
                )
                for p in result.errors
            ]
        )
        if result.unlisted_errors:
            self.import_errors.addItem(
                tr("broadcast.import.more_errors", count=result.unlisted_errors)
            )
        self.import_errors.setVisible(errors > 0)

    def _import_failed(self, message: str) -> None:
        self.import_summary.setText(self._tr.tr("broadcast.import.failed"))
        self.show_error(message)

    def _opt_in_changed(self, confirmed: bool) -> None:
        if self.opt_in.isChecked() != confirmed:
            self.opt_in.setChecked(confirmed)
        if confirmed and self.error.text() == self._tr.tr("broadcast.error.no_opt_in"):
            self.error.hide()

    # --- message and account --------------------------------------------------------------------

    def _message_changed(self) -> None:
        text = self.message.toPlainText()
        self.preview.setText(text if text.strip() else self._tr.tr("broadcast.preview_empty"))
        self.preview.setProperty("empty", not text.strip())
        length = message_length(text)
        self.char_count.setText(
            self._tr.tr("broadcast.chars", count=length, limit=MAX_MESSAGE_LENGTH)
        )
        self.char_count.setObjectName("error" if length > MAX_MESSAGE_LENGTH else "hint")
        for widget in (self.preview, self.char_count):
            style = widget.style()
            if style is not None:
                style.unpolish(widget)
                style.polish(widget)

    def _show_accounts(self, rows: list[AccountRow]) -> None:
        current = self.account.currentData()
        self.account.blockSignals(True)
        self.account.clear()
        now = self._accounts.now()
        for row in rows:
            badge = describe_status(row.status, now, self._tr)
            label = f"{row.info.display_name} (+{row.info.account_id}) — {badge.text}"
            self.account.addItem(label, row.info.account_id)
        if not rows:
            self.account.addItem(self._tr.tr("broadcast.no_accounts"), None)
        index = self.account.findData(current)
        self.account.setCurrentIndex(max(index, 0))
        self.account.blockSignals(False)

    def select_account(self, account_id: str) -> None:
        index = self.account.findData(account_id)
        if index >= 0:
            self.account.setCurrentIndex(index)

    def _show_pacing(self) -> None:
        pacing = self._vm.pacing
        tr = self._tr.tr
        if pacing.max_delay_sec > pacing.min_delay_sec:
            delay = tr(
                "broadcast.pacing.range",
                low=f"{pacing.min_delay_sec:g}",
                high=f"{pacing.max_delay_sec:g}",
            )
        else:
            delay = tr("broadcast.pacing.fixed", delay=f"{pacing.min_delay_sec:g}")
        if self._vm.pacing_is_demo:  # settings.ini's [broadcast] does not apply in the demo
            text = tr("broadcast.pacing.text_demo", delay=delay, batch=pacing.batch_size)
        else:
            text = tr("broadcast.pacing.text", delay=delay, batch=pacing.batch_size)
        count = len(self._vm.recipients)
        if count:
            average = (pacing.min_delay_sec + max(pacing.min_delay_sec, pacing.max_delay_sec)) / 2
            text += " " + tr(
                "broadcast.pacing.estimate",
                duration=format_duration(average * max(0, count - 1), self._tr),
            )
        self.pacing.setText(text)

    # --- earlier broadcasts ---------------------------------------------------------------------

    def _show_broadcasts(self, broadcasts: list[Broadcast]) -> None:
        self._broadcasts = list(broadcasts)
        resumable = self._vm.resumable(self._broadcasts)
        current = self.earlier.currentData()
        self.earlier.clear()
        tr = self._tr.tr
        for broadcast in resumable:
            first_line = broadcast.text.strip().splitlines()[0] if broadcast.text.strip() else ""
            if len(first_line) > 30:
                first_line = first_line[:29] + "…"
            self.earlier.addItem(
                tr(
                    "broadcast.earlier.item",
                    when=format_datetime(broadcast.created_at, self._tr),
                    text=first_line,
                    pending=broadcast.counts.pending,
                    total=broadcast.counts.total,
                ),
                broadcast.id,
            )
        if not resumable:
            self.earlier.addItem(tr("broadcast.earlier.none"), None)
        index = self.earlier.findData(current)
        self.earlier.setCurrentIndex(max(index, 0))
        self._update_controls()

    def _continue(self) -> None:
        broadcast_id = self.earlier.currentData()
        if broadcast_id is None:
            return
        self.error.hide()
        self.notices.clear()
        broadcast = next((b for b in self._broadcasts if b.id == broadcast_id), None)
        if broadcast is not None:
            self.message.setPlainText(broadcast.text)
            self.select_account(broadcast.account_id)
            self.progress_bar.setRange(0, max(1, broadcast.counts.total))
            self.progress_bar.setValue(broadcast.counts.done)
        self._vm.run_existing(str(broadcast_id))

    # --- running --------------------------------------------------------------------------------

    def selected_recipients(self) -> list[str]:
        return self.watch.selected_recipients()

    def _start(self, *, send_again: bool | None = None) -> None:
        self.error.hide()
        self.repeat.dismiss()
        if self._vm.start(
            self.account.currentData(), self.message.toPlainText(), send_again=send_again
        ):
            self.notices.clear()

    def _start_chosen(self, send_again: bool) -> None:
        self._start(send_again=send_again)

    def _pause_or_resume(self) -> None:
        if self._vm.paused:
            self._vm.resume()
        else:
            self._vm.pause()

    def _finished(self, progress: Progress) -> None:
        self.watch.show_progress(progress)
        self._license.refresh()

    def _update_controls(self) -> None:
        running = self._vm.running
        self.start_button.setEnabled(not running)
        self.pause_button.setEnabled(running)
        self.pause_button.setText(
            self._tr.tr("broadcast.resume") if self._vm.paused else self._tr.tr("broadcast.pause")
        )
        self.stop_button.setEnabled(running)
        self.continue_button.setEnabled(not running and self.earlier.currentData() is not None)
        for widget in (self.import_file_button, self.import_text_button, self.opt_in):
            widget.setEnabled(not running)
        self.watch.show_state()

    def add_notice(self, kind: str, message: str) -> None:
        self.watch.add_notice(kind, message)

    def show_error(self, message: str) -> None:
        self.error.setText(message)
        self.error.setVisible(bool(message))
