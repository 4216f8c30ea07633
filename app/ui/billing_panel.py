"""The "Plans & billing" panel: the subscription and its dates, the plans on offer with Subscribe
and Change plan (its prorated amount shown before it is confirmed), Cancel and Resume, the points
(:mod:`app.ui.points_box`), and the invoices with their payments. It only shows and forwards;
:mod:`app.viewmodels.billing` works."""

from __future__ import annotations

from typing import TYPE_CHECKING

from PyQt6.QtCore import Qt
from PyQt6.QtGui import QHideEvent, QShowEvent
from PyQt6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from agent.protocol import ChangeWhen, SubscriptionState
from app.core_billing import PROVIDER_NAMES
from app.i18n import N_, Translator
from app.viewmodels.billing import BillingViewModel
from app.viewmodels.billing_text import BillingText

from .billing_widgets import confirm_frame, fit_rows, table
from .error_line import reserve_space
from .points_box import PointsBox

if TYPE_CHECKING:
    from agent.protocol import CustomerInvoiceOut, PlanChangeOut, PlanOut, SubscriptionOut
    from app.core_billing import BillingSnapshot

#: The subscription's rows: their labels.
_FIELD_KEYS = {
    "plan": N_("billing.field.plan"),
    "state": N_("billing.field.state"),
    "period": N_("billing.field.period"),
    "entitled": N_("billing.field.entitled"),
    "trial": N_("billing.field.trial"),
}
_INVOICE_COLUMNS = (
    N_("billing.invoice.date"),
    N_("billing.invoice.period"),
    N_("billing.invoice.status"),
    N_("billing.invoice.total"),
    N_("billing.invoice.paid_amount"),
    N_("billing.invoice.payments"),
)
#: States whose period still runs: the plan can change, the subscription can be canceled.
_LIVE = frozenset({SubscriptionState.ACTIVE, SubscriptionState.TRIALING})
#: States with a renewal to pay.
_DUE = frozenset({SubscriptionState.PAST_DUE, SubscriptionState.UNPAID})
#: States after which subscribing again makes a new subscription.
_OVER = frozenset(
    {
        SubscriptionState.INCOMPLETE,
        SubscriptionState.INCOMPLETE_EXPIRED,
        SubscriptionState.CANCELED,
    }
)


class BillingPanel(QWidget):
    def __init__(
        self, model: BillingViewModel, translator: Translator, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.setObjectName("billingPanel")
        self._vm = model
        self._tr = translator
        self._text = BillingText(translator)

        # --- the subscription
        self._subscription_box = QGroupBox()
        form = QFormLayout(self._subscription_box)
        form.setLabelAlignment(Qt.AlignmentFlag.AlignRight)
        names = tuple(_FIELD_KEYS)
        self._labels = {name: QLabel() for name in names}
        self.values = {name: QLabel() for name in names}
        self.values["plan"].setObjectName("emphasis")
        for name in names:
            form.addRow(self._labels[name], self.values[name])
        self.note = QLabel()
        self.note.setObjectName("hint")
        self.note.setWordWrap(True)
        self.cancel_button = QPushButton()
        self.cancel_button.clicked.connect(lambda: self._vm.cancel())
        self.resume_button = QPushButton()
        self.resume_button.clicked.connect(lambda: self._vm.resume())
        self.pay_now_button = QPushButton()
        self.pay_now_button.setObjectName("primary")
        self.pay_now_button.clicked.connect(lambda: self._vm.pay_now())
        moves = QHBoxLayout()
        moves.addWidget(self.note, 1)
        moves.addWidget(self.pay_now_button)
        moves.addWidget(self.cancel_button)
        moves.addWidget(self.resume_button)
        form.addRow(moves)

        # --- the plans on offer
        self._plans_box = QGroupBox()
        plans = QVBoxLayout(self._plans_box)
        self.plans = table(4, "plans", stretch=0)
        self.plans.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.plans.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.plans.itemSelectionChanged.connect(self._enable)
        self.provider = QComboBox()
        for provider, name in PROVIDER_NAMES.items():
            self.provider.addItem(name, provider)
        self.subscribe_button = QPushButton()
        self.subscribe_button.setObjectName("primary")
        self.subscribe_button.clicked.connect(self._subscribe)
        self.when = QComboBox()
        self.when.addItem("", ChangeWhen.NOW)
        self.when.addItem("", ChangeWhen.PERIOD_END)
        self.change_button = QPushButton()
        self.change_button.clicked.connect(self._preview)
        self._provider_label = QLabel()
        self._when_label = QLabel()
        offer = QHBoxLayout()
        offer.addWidget(self._provider_label)
        offer.addWidget(self.provider)
        offer.addWidget(self.subscribe_button)
        offer.addStretch(1)
        offer.addWidget(self._when_label)
        offer.addWidget(self.when)
        offer.addWidget(self.change_button)
        # The priced change, shown before anything is charged.
        preview = confirm_frame("previewBox")
        self.preview_box, self.preview_text = preview.frame, preview.text
        self.confirm_button, self.back_button = preview.confirm, preview.back
        self.confirm_button.clicked.connect(self._confirm)
        self.back_button.clicked.connect(self._drop_preview)
        plans.addWidget(self.plans)
        plans.addLayout(offer)
        plans.addWidget(self.preview_box)

        # --- invoices and payments
        self._invoices_box = QGroupBox()
        invoices = QVBoxLayout(self._invoices_box)
        self.invoices = table(6, "invoices", stretch=5)
        self.invoices.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        invoices.addWidget(self.invoices)

        # --- points: the balance, its history, converting points into messages
        self.points = PointsBox(model, translator)

        # --- the tab's own line
        self.waiting = QLabel()
        self.waiting.setObjectName("hint")
        self.waiting.hide()
        self.error = reserve_space(QLabel())
        self.error.setObjectName("error")
        self.error.setWordWrap(True)
        self.error.hide()
        self.refresh_button = QPushButton()
        self.refresh_button.clicked.connect(self._vm.refresh)
        actions = QHBoxLayout()
        actions.addWidget(self.error, 1)
        actions.addWidget(self.waiting)
        actions.addWidget(self.refresh_button)

        layout = QVBoxLayout(self)
        layout.addWidget(self._subscription_box)
        layout.addWidget(self._plans_box)
        layout.addWidget(self.points)
        layout.addWidget(self._invoices_box, 1)
        layout.addLayout(actions)

        self._vm.changed.connect(self._show)
        self._vm.failed.connect(self._failed)
        self._vm.preview_ready.connect(self._show_preview)
        self._vm.busy_changed.connect(lambda _busy: self._enable())
        self._vm.polling_changed.connect(self.waiting.setVisible)
        translator.language_changed.connect(self._retranslate)
        self._retranslate()

    def showEvent(self, event: QShowEvent | None) -> None:
        # Shown again: what changed meanwhile (a payment made, a renewal) shows now.
        if event is not None and not event.spontaneous():
            self._vm.set_watched(True)
            self._vm.refresh()
        super().showEvent(event)

    def hideEvent(self, event: QHideEvent | None) -> None:
        if event is not None and not event.spontaneous():
            self._vm.set_watched(False)
        super().hideEvent(event)

    # --- actions --------------------------------------------------------------------------------

    def selected_plan(self) -> PlanOut | None:
        snapshot = self._vm.snapshot
        selection = self.plans.selectionModel()
        rows = [] if selection is None else selection.selectedRows()
        if snapshot is None or not rows:
            return None
        return snapshot.plans[rows[0].row()]

    def select_plan(self, name: str) -> None:
        """Select the plan called ``name`` (one on offer) in the table."""
        snapshot = self._vm.snapshot
        names = [] if snapshot is None else [plan.name for plan in snapshot.plans]
        self.plans.selectRow(names.index(name))

    def _subscribe(self) -> None:
        plan = self.selected_plan()
        if plan is not None:
            self.error.hide()
            self._vm.subscribe(plan.name, self.provider.currentData())

    def _preview(self) -> None:
        plan = self.selected_plan()
        if plan is not None:
            self.error.hide()
            self._vm.preview_change(plan.name, self.when.currentData())

    def _confirm(self) -> None:
        self.preview_box.hide()
        self._vm.confirm_change()

    def _drop_preview(self) -> None:
        self.preview_box.hide()
        self._vm.drop_preview()

    # --- display --------------------------------------------------------------------------------

    def _retranslate(self, _language: str = "") -> None:
        tr = self._tr.tr
        self._subscription_box.setTitle(tr("billing.subscription"))
        for name, label in self._labels.items():
            label.setText(tr(_FIELD_KEYS[name]))
        self.cancel_button.setText(tr("billing.cancel"))
        self.resume_button.setText(tr("billing.resume"))
        self.pay_now_button.setText(tr("billing.pay_now"))
        self._plans_box.setTitle(tr("billing.plans"))
        self.plans.setHorizontalHeaderLabels(
            [
                tr("billing.plan.name"),
                tr("billing.plan.price"),
                tr("billing.plan.quota"),
                tr("billing.plan.devices"),
            ]
        )
        self._provider_label.setText(tr("billing.provider"))
        self.subscribe_button.setText(tr("billing.subscribe"))
        self._when_label.setText(tr("billing.when"))
        self.when.setItemText(0, tr("billing.when.now"))
        self.when.setItemText(1, tr("billing.when.period_end"))
        self.change_button.setText(tr("billing.change"))
        self.confirm_button.setText(tr("billing.confirm"))
        self.back_button.setText(tr("billing.back"))
        self._invoices_box.setTitle(tr("billing.invoices"))
        self.invoices.setHorizontalHeaderLabels([tr(key) for key in _INVOICE_COLUMNS])
        self.waiting.setText(tr("billing.waiting"))
        self.refresh_button.setText(tr("billing.refresh"))
        self._show(self._vm.snapshot)
        if self._vm.preview is not None:
            self._show_preview(self._vm.preview)

    def _show(self, snapshot: BillingSnapshot | None) -> None:
        self.error.hide()
        sub = None if snapshot is None else snapshot.subscription
        self._show_subscription(snapshot, sub)
        selected = self.selected_plan()
        self.plans.setRowCount(0)
        for plan in () if snapshot is None else snapshot.plans:
            row = self.plans.rowCount()
            self.plans.insertRow(row)
            for column, text in enumerate(self._text.plan_cells(plan)):
                self.plans.setItem(row, column, QTableWidgetItem(text))
        self.plans.resizeRowsToContents()
        fit_rows(self.plans)
        on_offer = [] if snapshot is None else [plan.name for plan in snapshot.plans]
        if selected is not None and selected.name in on_offer:
            self.select_plan(selected.name)  # the same plan, though its row is new
        self.invoices.setRowCount(0)
        for invoice in () if snapshot is None else snapshot.invoices:
            self._add_invoice(invoice)
        self._enable()

    def _show_subscription(
        self, snapshot: BillingSnapshot | None, sub: SubscriptionOut | None
    ) -> None:
        tr = self._tr.tr
        values = self.values
        if sub is None or sub.state == SubscriptionState.INCOMPLETE_EXPIRED:
            plan = None if snapshot is None else snapshot.license_plan
            values["plan"].setText(plan or "—")
            values["state"].setText(tr("billing.state.none"))
            for name in ("period", "entitled", "trial"):
                values[name].setText("—")
            self.note.setText(tr("billing.note.none") if snapshot is not None else "")
            return
        text = self._text
        values["plan"].setText(
            tr(
                "billing.plan_price",
                plan=sub.plan,
                price=text.price(sub.price_minor, sub.currency, sub.interval),
            )
        )
        values["state"].setText(text.state(sub.state))
        values["state"].setObjectName("ok" if sub.state in _LIVE else "warning")
        style = values["state"].style()
        if style is not None:
            style.unpolish(values["state"])
            style.polish(values["state"])
        if sub.current_period_start is not None:
            values["period"].setText(text.period(sub.current_period_start, sub.current_period_end))
        else:
            values["period"].setText("—")
        values["entitled"].setText(text.date(sub.entitled_until))
        values["trial"].setText(text.date(sub.trial_end))
        self.note.setText(text.note(sub))

    def _add_invoice(self, invoice: CustomerInvoiceOut) -> None:
        row = self.invoices.rowCount()
        self.invoices.insertRow(row)
        for column, text in enumerate(self._text.invoice_cells(invoice)):
            self.invoices.setItem(row, column, QTableWidgetItem(text))

    def _show_preview(self, change: PlanChangeOut) -> None:
        self.preview_text.setText(self._text.preview(change))
        self.preview_box.show()
        self._enable()

    def _enable(self) -> None:
        snapshot = self._vm.snapshot
        sub = None if snapshot is None else snapshot.subscription
        plan = self.selected_plan()
        idle = not self._vm.busy
        live = sub is not None and sub.state in _LIVE
        self.subscribe_button.setEnabled(
            idle
            and plan is not None
            and plan.price_minor > 0
            and (sub is None or sub.state in _OVER)
        )
        other_plan = plan is not None and sub is not None and plan.name != sub.plan
        self.change_button.setEnabled(idle and live and other_plan)
        self.confirm_button.setEnabled(idle and self._vm.preview is not None)
        can_cancel = sub is not None and sub.state not in _OVER and not sub.cancel_at_period_end
        self.cancel_button.setEnabled(idle and can_cancel)
        can_resume = sub is not None and (
            sub.cancel_at_period_end or sub.state == SubscriptionState.PAUSED
        )
        self.resume_button.setEnabled(idle and can_resume)
        # A renewal is due: pay it now (on the kept card, else at a checkout).
        self.pay_now_button.setVisible(sub is not None and sub.state in _DUE)
        self.pay_now_button.setEnabled(idle)
        self.refresh_button.setEnabled(idle)

    def _failed(self, message: str) -> None:
        self.error.setText(message)
        self.error.show()
        self._enable()
