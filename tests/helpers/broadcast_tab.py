"""The Broadcast panel with its view-models over a Core on the engine, as the window builds it."""

from __future__ import annotations

from dataclasses import dataclass

from pytestqt.qtbot import QtBot

from app.core import Core
from app.engine import Engine
from app.i18n import Translator
from app.ui.broadcast_panel import BroadcastPanel
from app.viewmodels.accounts import AccountsViewModel
from app.viewmodels.broadcast import BroadcastSession
from app.viewmodels.license import LicenseViewModel


@dataclass
class BroadcastTab:
    panel: BroadcastPanel
    session: BroadcastSession
    accounts: AccountsViewModel


def broadcast_tab(qtbot: QtBot, engine: Engine, core: Core, language: str) -> BroadcastTab:
    """The panel (owned by qtbot), its accounts listed."""
    translator = Translator(language)
    session = BroadcastSession(engine, core, translator)
    accounts = AccountsViewModel(engine, core, translator)
    license_model = LicenseViewModel(engine, core, translator)
    panel = BroadcastPanel(session, accounts, license_model, translator)
    for model in (session, accounts, license_model):
        model.setParent(panel)
    qtbot.addWidget(panel)
    with qtbot.wait_signal(accounts.accounts_changed):
        accounts.refresh()
    return BroadcastTab(panel, session, accounts)
