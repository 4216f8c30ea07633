"""The "Points" section of the "Plans & billing" tab: the balance (and what is held or owed),
the newest changes of it, "Buy points" — a points product of the store, paid on the store's
page in the browser and credited by itself once paid — and "Convert to messages" — a number of
points, what they buy at the plan's rate, confirmed before anything is spent. It only shows and
forwards; the billing view-model works (:meth:`~app.viewmodels.billing.BillingViewModel.
buy_points`, :meth:`~app.viewmodels.billing.BillingViewModel.convert_points`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from PyQt6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.i18n import N_, Translator
from app.viewmodels.points_text import PointsText

from .billing_widgets import confirm_frame, table

if TYPE_CHECKING:
    from app.core_billing import BillingSnapshot
    from app.viewmodels.billing import BillingViewModel

_HISTORY_COLUMNS: Final = (
    N_("points.history.kind"),
    N_("points.history.amount"),
    N_("points.history.balance_after"),
    N_("points.history.date"),
)
#: The most points one conversion takes (``TopupRequest.points``' limit on the wire).
_MAX_POINTS: Final = 1_000_000


class PointsBox(QGroupBox):
    def __init__(
        self, model: BillingViewModel, translator: Translator, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.setObjectName("pointsBox")
        self._vm = model
        self._tr = translator
        self._text = PointsText(translator)

        self._balance_label = QLabel()
        self.balance = QLabel()
        self.balance.setObjectName("emphasis")
        self.aside = QLabel()
        self.aside.setObjectName("hint")
        top = QHBoxLayout()
        top.addWidget(self._balance_label)
        top.addWidget(self.balance)
        top.addWidget(self.aside)
        top.addStretch(1)

        self.history = table(len(_HISTORY_COLUMNS), "pointsHistory", stretch=3)
        self.history.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)

        self._buy_label = QLabel()
        self.products = QComboBox()
        self.products.setObjectName("pointsProducts")
        self.buy_button = QPushButton()
        self.buy_button.clicked.connect(self._buy)
        self.buy_hint = QLabel()
        self.buy_hint.setObjectName("hint")
        self.buy_hint.setWordWrap(True)
        buy = QHBoxLayout()
        buy.addWidget(self._buy_label)
        buy.addWidget(self.products, 1)
        buy.addWidget(self.buy_button)

        self._convert_label = QLabel()
        self.spin = QSpinBox()
        self.spin.setRange(1, _MAX_POINTS)
        self.spin.valueChanged.connect(lambda _value: self._show_rate())
        self.rate = QLabel()
        self.rate.setObjectName("hint")
        self.rate.setWordWrap(True)
        self.convert_button = QPushButton()
        self.convert_button.clicked.connect(self._ask)
        convert = QHBoxLayout()
        convert.addWidget(self._convert_label)
        convert.addWidget(self.spin)
        convert.addWidget(self.rate, 1)
        convert.addWidget(self.convert_button)
        # What the points buy, shown before anything is spent.
        confirm = confirm_frame("pointsConfirm")
        self.confirm_box, self.confirm_text = confirm.frame, confirm.text
        self.confirm_button, self.back_button = confirm.confirm, confirm.back
        self.confirm_button.clicked.connect(self._confirm)
        self.back_button.clicked.connect(self.confirm_box.hide)
        self.done = QLabel()
        self.done.setObjectName("ok")
        self.done.hide()

        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.history)
        layout.addLayout(buy)
        layout.addWidget(self.buy_hint)
        layout.addLayout(convert)
        layout.addWidget(self.confirm_box)
        layout.addWidget(self.done)

        model.changed.connect(self._show)
        model.converted.connect(self._converted)
        model.points_bought.connect(self._bought)
        model.purchase_changed.connect(lambda _awaited: self._show_buy())
        model.failed.connect(lambda _message: self.done.hide())
        model.busy_changed.connect(lambda _busy: self._enable())
        translator.language_changed.connect(self._retranslate)
        self._retranslate()

    # --- what the panel shows -------------------------------------------------------------------

    def _rate(self) -> int | None:
        snapshot = self._vm.snapshot
        return None if snapshot is None else snapshot.topup_rate()

    def _plan(self) -> str | None:
        snapshot = self._vm.snapshot
        return None if snapshot is None else snapshot.license_plan

    def _retranslate(self, _language: str = "") -> None:
        tr = self._tr.tr
        self.setTitle(tr("points.title"))
        self._balance_label.setText(tr("points.balance"))
        self.history.setHorizontalHeaderLabels([tr(key) for key in _HISTORY_COLUMNS])
        self._buy_label.setText(tr("points.buy_label"))
        self.buy_button.setText(tr("points.buy"))
        self._convert_label.setText(tr("points.convert_label"))
        self.convert_button.setText(tr("points.convert"))
        self.confirm_button.setText(tr("points.confirm_button"))
        self.back_button.setText(tr("billing.back"))
        self._show(self._vm.snapshot)
        if not self.confirm_box.isHidden():
            self.confirm_text.setText(self._text.confirm(self._rate(), self.spin.value()))

    def _show(self, snapshot: BillingSnapshot | None) -> None:
        wallet = None if snapshot is None else snapshot.points
        self.balance.setText(self._text.balance(wallet))
        aside = self._text.set_aside(wallet)
        self.aside.setText(aside)
        self.aside.setVisible(bool(aside))
        self.history.setRowCount(0)
        for entry in () if snapshot is None else snapshot.points_history:
            row = self.history.rowCount()
            self.history.insertRow(row)
            for column, text in enumerate(self._text.entry_cells(entry)):
                self.history.setItem(row, column, QTableWidgetItem(text))
        self._show_products(snapshot)
        self._show_rate()

    def _show_products(self, snapshot: BillingSnapshot | None) -> None:
        chosen = self.products.currentData()
        self.products.clear()
        for product in () if snapshot is None else snapshot.points_products:
            self.products.addItem(self._text.product(product), product.id)
        index = self.products.findData(chosen)
        if index >= 0:
            self.products.setCurrentIndex(index)
        self._show_buy()

    def _show_buy(self) -> None:
        snapshot = self._vm.snapshot
        awaited = self._vm.purchase is not None
        hint = self._text.buy_hint(snapshot, awaited=awaited)
        self.buy_hint.setText(hint)
        self.buy_hint.setVisible(bool(hint))
        self._enable()

    def _show_rate(self) -> None:
        if self._vm.snapshot is None:
            self.rate.setText("")
        else:
            self.rate.setText(self._text.rate(self._plan(), self._rate(), self.spin.value()))
        self._enable()

    def _enable(self) -> None:
        snapshot = self._vm.snapshot
        on_sale = self.products.count() > 0
        self.products.setEnabled(on_sale)
        self.buy_button.setEnabled(on_sale and not self._vm.busy and self._vm.purchase is None)
        # A plan that sells no messages: the explanation stays, the conversion is off.
        sells = snapshot is not None and snapshot.points is not None and self._rate() != 0
        self.spin.setEnabled(sells)
        self.convert_button.setEnabled(sells and not self._vm.busy)
        self.confirm_button.setEnabled(sells and not self._vm.busy)
        if not sells:
            self.confirm_box.hide()

    # --- actions --------------------------------------------------------------------------------

    def _buy(self) -> None:
        self.done.hide()
        product_id = self.products.currentData()
        if product_id is not None:
            self._vm.buy_points(str(product_id))

    def _bought(self, points: int) -> None:
        self.done.setText(self._text.bought(points))
        self.done.show()

    def _ask(self) -> None:
        self.done.hide()
        self.confirm_text.setText(self._text.confirm(self._rate(), self.spin.value()))
        self.confirm_box.show()

    def _confirm(self) -> None:
        self.confirm_box.hide()
        self._vm.convert_points(self.spin.value())

    def _converted(self, points: int, messages: int) -> None:
        self.done.setText(self._text.converted(points, messages))
        self.done.show()
