"""The Marketplace panel: the connection, a card per app of the catalog, the installed apps."""

from __future__ import annotations

from PyQt6.QtGui import QShowEvent
from PyQt6.QtWidgets import (
    QComboBox,
    QFormLayout,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from app.i18n import N_, Translator
from app.viewmodels.formatting import format_price
from app.viewmodels.marketplace import (
    PAID_PLANS,
    AppCard,
    MarketplaceState,
    MarketplaceViewModel,
)

_PLAN_KEYS = {
    "trial": N_("marketplace.plan.trial"),
    "monthly": N_("marketplace.plan.monthly"),
    "yearly": N_("marketplace.plan.yearly"),
    "perpetual": N_("marketplace.plan.perpetual"),
}
_STATUS_KEYS = {
    "trial": N_("marketplace.status.trial"),
    "pending": N_("marketplace.status.pending"),
    "active": N_("marketplace.status.active"),
    "grace": N_("marketplace.status.grace"),
    "disabled": N_("marketplace.status.disabled"),
    "expired": N_("marketplace.status.expired"),
    "revoked": N_("marketplace.status.revoked"),
}


class AppCardWidget(QFrame):
    """One app of the catalog: what it is, what it costs, its license, and the actions."""

    def __init__(self, card: AppCard, model: MarketplaceViewModel, translator: Translator) -> None:
        super().__init__()
        self.setObjectName("appCard")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.card = card
        tr = translator.tr
        self.name = QLabel(card.name)
        self.name.setObjectName("emphasis")
        self.developer = QLabel(tr("marketplace.by", developer=card.developer))
        self.developer.setObjectName("hint")
        self.description = QLabel(card.description)
        self.description.setWordWrap(True)
        self.prices = QLabel(
            "  ·  ".join(
                tr(
                    "marketplace.price.per_plan",
                    plan=tr(_PLAN_KEYS[plan]),
                    price=format_price(card.prices[plan], card.currency, translator),
                )
                for plan in PAID_PLANS
            )
        )
        status = card.license_status
        status_text = tr(_STATUS_KEYS[status]) if status in _STATUS_KEYS else (status or "")
        self.status = QLabel(
            tr("marketplace.license", status=status_text)
            if status is not None
            else tr("marketplace.no_license")
        )
        self.status.setObjectName("ok" if card.installable else "hint")
        if card.installed:
            self.status.setText(self.status.text() + " · " + tr("marketplace.installed_mark"))

        self.trial_button = QPushButton(tr("marketplace.start_trial"))
        self.trial_button.setEnabled(not card.trial_taken and status not in ("active", "grace"))
        self.trial_button.clicked.connect(lambda: model.start_trial(card.id))
        self.plan = QComboBox()
        for plan in PAID_PLANS:
            if card.prices[plan] is not None:
                self.plan.addItem(tr(_PLAN_KEYS[plan]), plan)
        self.purchase_button = QPushButton(tr("marketplace.request_purchase"))
        self.purchase_button.setEnabled(self.plan.count() > 0)
        self.purchase_button.clicked.connect(
            lambda: model.request_license(card.id, str(self.plan.currentData()))
        )
        self.install_button = QPushButton(
            tr("marketplace.reinstall") if card.installed else tr("marketplace.install")
        )
        self.install_button.setObjectName("primary")
        self.install_button.setEnabled(card.installable)
        self.install_button.clicked.connect(lambda: model.install(card.id))
        self.uninstall_button = QPushButton(tr("marketplace.uninstall"))
        self.uninstall_button.setEnabled(card.installed)
        self.uninstall_button.clicked.connect(lambda: model.uninstall(card.id))
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.progress.hide()

        actions = QHBoxLayout()
        actions.addWidget(self.trial_button)
        actions.addWidget(self.plan)
        actions.addWidget(self.purchase_button)
        actions.addStretch(1)
        actions.addWidget(self.install_button)
        actions.addWidget(self.uninstall_button)
        head = QHBoxLayout()
        head.addWidget(self.name)
        head.addWidget(self.developer)
        head.addStretch(1)
        head.addWidget(self.status)
        if card.free:
            self._offer_for_free(card, model, translator)
        layout = QVBoxLayout(self)
        layout.addLayout(head)
        layout.addWidget(self.description)
        layout.addWidget(self.prices)
        layout.addWidget(self.progress)
        layout.addLayout(actions)

    def _offer_for_free(
        self, card: AppCard, model: MarketplaceViewModel, translator: Translator
    ) -> None:
        """A free app: neither a trial nor a purchase, one "Get it free" until it is licensed."""
        tr = translator.tr
        self.prices.setText(tr("marketplace.price.free_app"))
        self.trial_button.hide()
        self.plan.hide()
        self.purchase_button.setText(tr("marketplace.get_free"))
        self.purchase_button.clicked.disconnect()
        plan = str(card.free_plan)
        self.purchase_button.clicked.connect(lambda: model.request_license(card.id, plan))
        self.purchase_button.setVisible(not card.installable)

    def show_progress(self, done: int, total: int) -> None:
        self.progress.show()
        self.progress.setValue(done * 100 // total if total else 100)


class MarketplacePanel(QWidget):
    def __init__(
        self, model: MarketplaceViewModel, translator: Translator, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.setObjectName("marketplacePanel")
        self._vm = model
        self._tr = translator
        self.cards: dict[str, AppCardWidget] = {}

        # --- connection
        self._connection_box = QGroupBox()
        form = QFormLayout(self._connection_box)
        self._url_label = QLabel()
        self._token_label = QLabel()
        self.url = QLineEdit()
        self.url.setPlaceholderText("https://")
        self.token = QLineEdit()
        self.token.setEchoMode(QLineEdit.EchoMode.Password)
        self.save_button = QPushButton()
        self.save_button.setObjectName("primary")
        self.save_button.clicked.connect(lambda: self._vm.save(self.url.text(), self.token.text()))
        self.refresh_button = QPushButton()
        self.refresh_button.clicked.connect(self._vm.refresh)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(self.refresh_button)
        buttons.addWidget(self.save_button)
        form.addRow(self._url_label, self.url)
        form.addRow(self._token_label, self.token)
        form.addRow(buttons)

        self.error = QLabel()
        self.error.setObjectName("error")
        self.error.setWordWrap(True)
        self.error.hide()
        self.status = QLabel()
        self.status.setObjectName("hint")

        # --- catalog
        self._catalog_box = QGroupBox()
        self._cards_host = QWidget()
        self._cards_layout = QVBoxLayout(self._cards_host)
        self._cards_layout.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(self._cards_host)
        catalog = QVBoxLayout(self._catalog_box)
        catalog.addWidget(scroll)

        # --- installed
        self._installed_box = QGroupBox()
        self.installed_list = QListWidget()
        installed = QVBoxLayout(self._installed_box)
        installed.addWidget(self.installed_list)

        layout = QVBoxLayout(self)
        layout.addWidget(self._connection_box)
        layout.addWidget(self.error)
        layout.addWidget(self.status)
        layout.addWidget(self._catalog_box, 3)
        layout.addWidget(self._installed_box, 1)

        self._vm.connection_loaded.connect(self._connection_loaded)
        self._vm.changed.connect(self._show)
        self._vm.failed.connect(self._failed)
        self._vm.busy_changed.connect(self._busy)
        self._vm.progress.connect(self._progress)
        self._vm.installed.connect(
            lambda app_id: self._say(N_("marketplace.done.installed"), app_id)
        )
        self._vm.uninstalled.connect(
            lambda app_id: self._say(N_("marketplace.done.uninstalled"), app_id)
        )
        self._vm.saved.connect(lambda: self.status.setText(self._tr.tr("marketplace.saved")))
        translator.language_changed.connect(self._retranslate)
        self._retranslate()

    def showEvent(self, event: QShowEvent | None) -> None:
        # The connection is read the first time the tab is shown, not at start-up.
        if not self._vm.loaded and not self._vm.busy:
            self._vm.load()
        super().showEvent(event)

    # --- display --------------------------------------------------------------------------------

    def _retranslate(self, _language: str = "") -> None:
        tr = self._tr.tr
        self._connection_box.setTitle(tr("marketplace.connection"))
        self._url_label.setText(tr("marketplace.url"))
        self._token_label.setText(tr("marketplace.admin_token"))
        self.token.setPlaceholderText(tr("marketplace.admin_token_hint"))
        self.save_button.setText(tr("marketplace.save_connect"))
        self.refresh_button.setText(tr("marketplace.refresh"))
        self._catalog_box.setTitle(tr("marketplace.catalog"))
        self._installed_box.setTitle(tr("marketplace.installed"))
        self._show(self._vm.state)

    def _connection_loaded(self, url: str, token: str) -> None:
        self.url.setText(url)
        self.token.setText(token)
        if not (url and token):
            self.status.setText(self._tr.tr("marketplace.not_connected"))

    def _show(self, state: MarketplaceState) -> None:
        tr = self._tr.tr
        self.error.hide()
        for widget in self.cards.values():
            widget.setParent(None)
            widget.deleteLater()
        self.cards.clear()
        for card in state.cards:
            widget = AppCardWidget(card, self._vm, self._tr)
            widget.setEnabled(not self._vm.busy)
            self._cards_layout.insertWidget(self._cards_layout.count() - 1, widget)
            self.cards[card.id] = widget
        self.installed_list.clear()
        for row in state.installed:
            status = (
                tr(_STATUS_KEYS[row.license_status])
                if row.license_status in _STATUS_KEYS
                else row.license_status
            )
            text = tr("marketplace.installed_row", name=row.name, status=status)
            if not row.local:
                text += " · " + tr("marketplace.files_missing")
            self.installed_list.addItem(text)
        if not state.installed:
            self.installed_list.addItem(tr("marketplace.none_installed"))

    def _busy(self, busy: bool) -> None:
        self.save_button.setEnabled(not busy)
        self.refresh_button.setEnabled(not busy and self._vm.connected)
        for widget in self.cards.values():
            widget.setEnabled(not busy)
        working = self._tr.tr("marketplace.working")
        if busy:
            self.status.setText(working)
        elif self.status.text() == working:
            self.status.setText("")

    def _progress(self, app_id: str, done: int, total: int) -> None:
        widget = self.cards.get(app_id)
        if widget is not None:
            widget.show_progress(done, total)

    def _say(self, key: str, app_id: str) -> None:
        card = self._vm.card(app_id)
        self.status.setText(self._tr.tr(key, name=card.name if card else app_id))

    def _failed(self, message: str) -> None:
        self.error.setText(message)
        self.error.show()
        self.status.setText("")
        for widget in self.cards.values():
            widget.progress.hide()
