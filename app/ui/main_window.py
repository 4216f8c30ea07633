"""The main window: the License, Accounts, Broadcast, Marketplace, Plans & billing, Logs and
Settings panels, the login dialog and the language switch.

Contract with the entry point: build it in the GUI thread once the engine runs and the core lives
on the engine loop, then call :meth:`MainWindow.start`. It shows the window, signs in again with
the stored session when there is one, and otherwise opens the login dialog (prefilled with
``demo_credentials`` when given). Nothing here waits for the network or the disk.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from PyQt6.QtGui import QCloseEvent
from PyQt6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QMessageBox,
    QPushButton,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from app.engine import Engine
from app.i18n import LANGUAGES, N_, QtTranslations, Translator
from app.license_modules import MODULE_MARKETPLACE
from app.viewmodels.accounts import AccountsViewModel
from app.viewmodels.broadcast import BroadcastSession
from app.viewmodels.license import LicenseViewModel
from app.viewmodels.logs import LogsViewModel
from app.viewmodels.session import SessionViewModel
from app.viewmodels.settings import SettingsViewModel

from .accounts_panel import AccountsPanel
from .broadcast_panel import BroadcastPanel
from .license_panel import LicensePanel
from .login_dialog import LoginDialog
from .logs_panel import LogsPanel
from .main_menus import MainMenus
from .quit_guard import QuitGuard
from .settings_panel import SettingsPanel
from .style import load_style_sheet

if TYPE_CHECKING:
    from app.config import Settings
    from app.core import Core, LicenseSnapshot
    from app.viewmodels.billing import BillingViewModel
    from app.viewmodels.marketplace import MarketplaceViewModel

    from .billing_panel import BillingPanel
    from .marketplace_panel import MarketplacePanel

_TAB_KEYS = (
    N_("tab.license"),
    N_("tab.accounts"),
    N_("tab.broadcast"),
    N_("tab.marketplace"),
    N_("tab.billing"),
    N_("tab.logs"),
    N_("tab.settings"),
)


class MainWindow(QMainWindow):
    def __init__(
        self,
        engine: Engine,
        core: Core,
        *,
        settings: Settings,
        settings_path: Path,
        log_dir: Path,
        translator: Translator,
        demo_credentials: tuple[str, str] | None = None,
        marketplace_defaults: tuple[str, str] | None = None,
        demo_license: tuple[Path, str] | None = None,
        current_log: Path | None = None,
        billing_opener: Callable[[str], None] | None = None,
        billing_poll_ms: int | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("mainWindow")
        self._engine = engine
        self._core = core
        self._tr = translator
        # Qt's own dialogs (file dialog, message box buttons) speak the window's language too.
        self.qt_translations = QtTranslations(translator, self)
        self._demo_credentials = demo_credentials
        self._marketplace_defaults = marketplace_defaults
        #: The demo's license file and key: the license-file dialog opens there, filled in.
        self._demo_license = demo_license
        self._login: LoginDialog | None = None
        self._simulated = core.transports.kind == "simulated"

        # --- view-models
        self.session = SessionViewModel(engine, core, translator, self)
        self.license = LicenseViewModel(engine, core, translator, self)
        self.accounts = AccountsViewModel(
            engine,
            core,
            translator,
            api_credentials_missing=not self._simulated and settings.telegram.api_id is None,
            parent=self,
        )
        self.broadcast = BroadcastSession(engine, core, translator, self)
        self.logs = LogsViewModel(engine, translator, log_dir, current=current_log, parent=self)
        self.settings = SettingsViewModel(
            engine,
            translator,
            settings_path,
            settings=settings,
            server_in_use=core.config.api_base_url,
            embedded_server=demo_credentials is not None,
            parent=self,
        )

        # --- panels
        self.license_panel = LicensePanel(self.license, translator)
        if demo_license is not None:
            self.license_panel.file_box.directory = demo_license[0].parent
        self.accounts_panel = AccountsPanel(self.accounts, translator)
        self.broadcast_panel = BroadcastPanel(
            self.broadcast, self.accounts, self.license, translator
        )
        self.logs_panel = LogsPanel(self.logs, translator)
        self.settings_panel = SettingsPanel(self.settings, translator)
        # Built when its tab is first opened: the start-up is benchmarked, and the marketplace is
        # not needed to show the window.
        self.marketplace: MarketplaceViewModel | None = None
        self.marketplace_panel: MarketplacePanel | None = None
        self.marketplace_tab = QWidget()
        self.marketplace_tab.setObjectName("marketplaceTab")
        QVBoxLayout(self.marketplace_tab).setContentsMargins(0, 0, 0, 0)
        # The same for "Plans & billing"; its checkout opener and poll interval are injectable.
        self.billing: BillingViewModel | None = None
        self.billing_panel: BillingPanel | None = None
        self._billing_options = (billing_opener, billing_poll_ms)
        self.billing_tab = QWidget()
        self.billing_tab.setObjectName("billingTab")
        QVBoxLayout(self.billing_tab).setContentsMargins(0, 0, 0, 0)
        self.tabs = QTabWidget()
        self.tabs.setObjectName("tabs")
        self.tabs.setDocumentMode(True)
        for panel in (
            self.license_panel,
            self.accounts_panel,
            self.broadcast_panel,
            self.marketplace_tab,
            self.billing_tab,
            self.logs_panel,
            self.settings_panel,
        ):
            self.tabs.addTab(panel, "")
        self.tabs.currentChanged.connect(self._tab_changed)

        # Shown while nobody is signed in.
        self.banner = QWidget()
        self.banner.setObjectName("banner")
        self.banner_text = QLabel()
        self.banner_text.setWordWrap(True)
        self.banner_button = QPushButton()
        self.banner_button.setObjectName("primary")
        self.banner_button.clicked.connect(lambda: self.show_login())
        banner_layout = QHBoxLayout(self.banner)
        banner_layout.addWidget(self.banner_text, 1)
        banner_layout.addWidget(self.banner_button)
        # Hidden once signed in, it keeps its height: the tabs must not jump up under the mouse
        # at the moment the sign-in succeeds (nor down at sign-out).
        banner_policy = self.banner.sizePolicy()
        banner_policy.setRetainSizeWhenHidden(True)
        self.banner.setSizePolicy(banner_policy)

        central = QWidget()
        layout = QVBoxLayout(central)
        layout.setContentsMargins(8, 8, 8, 8)
        layout.addWidget(self.banner)
        layout.addWidget(self.tabs, 1)
        self.setCentralWidget(central)

        # --- menus, status bar, and the question on quitting mid-broadcast
        self.menus = MainMenus(
            self,
            translator,
            sign_in=self.show_login,
            sign_out=self._sign_out,
            set_language=self.set_language,
            simulated=self._simulated,
        )
        # The window's own names for what the session enables and labels (tests use them too).
        self.sign_in_action = self.menus.sign_in_action
        self.sign_out_action = self.menus.sign_out_action
        self.quit_action = self.menus.quit_action
        self.language_actions = self.menus.language_actions
        self.user_label = self.menus.user_label
        self.quit_guard = QuitGuard(self, self.broadcast, translator, self._status_message)

        # --- wiring
        self.session.signed_in.connect(self._signed_in)
        self.session.signed_out.connect(self._signed_out)
        self.session.needs_sign_in.connect(self._needs_sign_in)
        self.session.busy_changed.connect(lambda _busy: self._show_session())
        self.settings.saved.connect(self._settings_saved)
        self.license.failed.connect(self._status_message)
        self.license.deactivated.connect(self.session.license_file_gone)
        self.license.changed.connect(self._gate_modules)
        engine.failed.connect(lambda _what, _exc: self._status_message(self._tr.tr("error.task")))
        translator.language_changed.connect(self._retranslate)

        self.setStyleSheet(load_style_sheet())
        self.resize(1180, 780)
        self._retranslate()

    # --- start and session ----------------------------------------------------------------------

    def start(self) -> None:
        """Show the window; sign in with the stored session, or open the login dialog."""
        self.show()
        self.settings.load()
        self.logs.refresh()
        if not self.session.resume():
            self.show_login()

    def show_login(self, message: str = "") -> LoginDialog:
        """Open the login dialog (window-modal, never a nested event loop)."""
        if self._login is None:
            email, password = self._demo_credentials or ("", "")
            demo_license = self._demo_license
            self._login = LoginDialog(
                self.session,
                self._tr,
                self,
                email=email,
                password=password,
                demo=self._demo_credentials is not None,
                license_directory=None if demo_license is None else demo_license[0].parent,
                demo_license=demo_license,
            )
        if not self._login.isVisible():
            self._login.reset_fields()
            self._login.show_error(message)
            self._login.open()
        else:
            self._login.show_error(message)
        return self._login

    def prefill_broadcast(self, recipients: Path, text: str) -> None:
        """Put a recipients file and a message into the Broadcast tab, and point its file dialog
        at the file's folder (the demo's). The opt-in tick is left to the user."""
        panel = self.broadcast_panel
        panel.set_file_directory(recipients.parent)
        panel.message.setPlainText(text)
        panel.import_file(recipients)

    @property
    def translator(self) -> Translator:
        return self._tr

    @property
    def login_dialog(self) -> LoginDialog | None:
        return self._login

    @property
    def quit_confirm(self) -> QMessageBox | None:
        """Asked when the window is closed while a broadcast runs (``None`` until then)."""
        return self.quit_guard.box

    def _needs_sign_in(self, message: str) -> None:
        self._show_session()
        self.show_login(message)

    def _signed_in(self, snapshot: LicenseSnapshot) -> None:
        # "Sign in first" under a panel is stale now.
        not_signed_in = self._tr.tr("error.not_signed_in")
        for line in (self.broadcast_panel.error, self.accounts_panel.error):
            if line.text() == not_signed_in:
                line.hide()
        self.license.set_snapshot(snapshot)
        if self.billing is not None and snapshot.license_file is None:
            self.billing.refresh()
        self.accounts.refresh()
        self.broadcast.refresh_broadcasts()
        self.broadcast.suppression.refresh()
        self.logs.refresh()
        self._show_session()

    def _signed_out(self) -> None:
        self.license.set_snapshot(None)
        if self.billing is not None:
            self.billing.stop_polling()
        self._show_session()
        self.show_login()

    def _sign_out(self) -> None:
        # In license-file mode signing out forgets the file: ask first, as Deactivate does.
        if self.session.customer is not None:
            self.license_panel.file_box.ask_deactivate()
        else:
            self.session.sign_out()

    def _gate_modules(self, snapshot: LicenseSnapshot | None) -> None:
        """A license file without the ``marketplace`` module has no Marketplace tab to use
        (docs/desktop.md, "License files"); an e-mail account has every module."""
        facts = None if snapshot is None else snapshot.license_file
        index = self.tabs.indexOf(self.marketplace_tab)
        self.tabs.setTabEnabled(index, facts is None or MODULE_MARKETPLACE in facts.modules)
        # A license file is paid for outside the program: there is no account to bill.
        self.tabs.setTabEnabled(self.tabs.indexOf(self.billing_tab), facts is None)

    def _show_session(self) -> None:
        tr = self._tr.tr
        email = self.session.email
        customer = self.session.customer
        signed_in = self.session.active
        self.banner.setVisible(not signed_in)
        self.banner_text.setText(
            tr("main.signing_in") if self.session.busy else tr("main.not_signed_in")
        )
        self.banner_button.setEnabled(not self.session.busy)
        self.sign_in_action.setEnabled(not signed_in)
        self.sign_out_action.setEnabled(signed_in)
        who = email if email is not None else customer
        if email is not None:
            self.user_label.setText(tr("main.signed_in_as", email=email))
        elif customer is not None:
            self.user_label.setText(tr("main.licensed_to", customer=customer))
        else:
            self.user_label.setText("")
        title = tr("main.title")
        self.setWindowTitle(f"{title} — {who}" if who else title)

    def _tab_changed(self, index: int) -> None:
        widget = self.tabs.widget(index)
        if widget is self.logs_panel:
            self.logs.refresh()
        elif widget is self.marketplace_tab:
            self.open_marketplace()
        elif widget is self.billing_tab:
            self.open_billing()

    def open_marketplace(self) -> MarketplacePanel:
        """Build the Marketplace panel (once); it reads the stored connection when shown."""
        if self.marketplace_panel is None:
            from app.viewmodels.marketplace import MarketplaceViewModel

            from .marketplace_panel import MarketplacePanel

            core = self._core
            self.marketplace = MarketplaceViewModel(
                self._engine,
                self._tr,
                lambda: core.data_dir,  # read on the engine, once the core is built
                defaults=self._marketplace_defaults,
                parent=self,
            )
            self.marketplace_panel = MarketplacePanel(self.marketplace, self._tr)
            layout = self.marketplace_tab.layout()
            assert layout is not None
            layout.addWidget(self.marketplace_panel)
        return self.marketplace_panel

    def open_billing(self) -> BillingPanel:
        """Build the "Plans & billing" panel (once); it loads when shown."""
        if self.billing_panel is None:
            from app.viewmodels.billing import POLL_INTERVAL_MS, BillingViewModel, open_in_browser

            from .billing_panel import BillingPanel

            opener, poll_ms = self._billing_options
            self.billing = BillingViewModel(
                self._engine,
                self._core,
                self._tr,
                self,
                opener=opener or open_in_browser,
                poll_interval_ms=poll_ms or POLL_INTERVAL_MS,
            )
            # Points converted into messages: the License tab's quota grew.
            self.billing.converted.connect(lambda _points, _messages: self.license.refresh())
            self.billing_panel = BillingPanel(self.billing, self._tr)
            layout = self.billing_tab.layout()
            assert layout is not None
            layout.addWidget(self.billing_panel)
        return self.billing_panel

    # --- language -------------------------------------------------------------------------------

    def set_language(self, language: str) -> None:
        """Switch the window's language now and keep the choice in settings.ini."""
        self._tr.set_language(language)
        self.settings.save({("ui", "language"): language})

    def _settings_saved(self, changes: dict[tuple[str, str], str]) -> None:
        language = changes.get(("ui", "language"))
        if language in LANGUAGES:
            self._tr.set_language(language)

    def _retranslate(self, _language: str = "") -> None:
        tr = self._tr.tr
        for index, key in enumerate(_TAB_KEYS):
            self.tabs.setTabText(index, tr(key))
        self.menus.retranslate()
        self.banner_button.setText(tr("main.sign_in"))
        self._show_session()

    def _status_message(self, message: str) -> None:
        status = self.statusBar()
        if status is not None:
            status.showMessage(message, 10_000)

    def closeEvent(self, event: QCloseEvent | None) -> None:
        if event is not None and not self.quit_guard.allows_close():
            # Quitting mid-run would leave messages reserved and the broadcast "running": ask,
            # and on yes stop it the way Stop does (what was sent is committed, the rest
            # released); the window closes when the worker has finished.
            event.ignore()
            return
        if self._login is not None:
            self._login.close()
        super().closeEvent(event)
