"""The window's translations: both languages complete, every key used exists, switching relabels."""

from __future__ import annotations

import json
import re
import string
from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot

from app.catalog import translations_dir
from app.config import Settings
from app.i18n import LANGUAGES, Translator
from app.ui.main_window import MainWindow
from app.viewmodels.recipient_table import RecipientTableModel
from app.viewmodels.settings import FIELDS, SECTION_LABELS
from tests.helpers.desktop import Desktop

APP = Path(__file__).resolve().parents[2] / "app"
# A key is used as tr("…") / .tr("…") or marked N_("…") where it is kept for later lookup.
KEY_USE = re.compile(r"\b(?:tr|N_)\(\s*\"([^\"]+)\"")


def catalogue(language: str) -> dict[str, str]:
    data = json.loads((translations_dir() / f"{language}.json").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def fields(text: str) -> set[str]:
    return {name for _lit, name, _spec, _conv in string.Formatter().parse(text) if name}


def used_keys() -> set[str]:
    keys: set[str] = set()
    for path in APP.rglob("*.py"):
        keys.update(KEY_USE.findall(path.read_text(encoding="utf-8")))
    # The Settings panel's labels are named after the schema's keys (app/settings_schema.py).
    keys.update(SECTION_LABELS.values())
    keys.update(key for field in FIELDS for key in (field.label, field.help))
    return keys


def test_russian_and_english_have_the_same_keys_and_fields() -> None:
    ru, en = catalogue("ru"), catalogue("en")
    assert set(ru) == set(en)
    for key in ru:
        assert ru[key].strip() and en[key].strip(), key
        assert fields(ru[key]) == fields(en[key]), key


def test_every_key_used_in_app_exists_and_every_key_is_used() -> None:
    used = used_keys()
    assert len(used) > 100  # the scan found the code
    for language in LANGUAGES:
        keys = set(catalogue(language))
        assert used - keys == set(), f"missing from {language}.json"
        assert keys - used == set(), f"unused in {language}.json"


def test_russian_is_the_default_and_english_is_a_switch_away(qtbot: QtBot) -> None:
    translator = Translator()
    assert translator.language == "ru"
    assert translator.tr("tab.broadcast") == "Рассылка"
    with qtbot.wait_signal(translator.language_changed) as blocker:
        translator.set_language("en")
    assert blocker.args == ["en"]
    assert translator.tr("tab.broadcast") == "Broadcast"
    assert translator.tr("notice.flood_wait", seconds=42) == (
        "FloodWait: waiting 42 s, as Telegram asked"
    )
    with pytest.raises(ValueError, match="unknown language"):
        translator.set_language("de")


def test_the_recipient_table_relabels(qtbot: QtBot) -> None:
    from PyQt6.QtCore import Qt

    translator = Translator("ru")
    model = RecipientTableModel(translator)
    model.set_recipients(["@someone_1"])
    assert model.headerData(1, Qt.Orientation.Horizontal) == "Получатель"
    model.set_all_states("sent")
    assert model.data(model.index(0, 2)) == "отправлено"
    with qtbot.wait_signal(model.headerDataChanged):
        translator.set_language("en")
    assert model.headerData(1, Qt.Orientation.Horizontal) == "Recipient"
    assert model.data(model.index(0, 2)) == "sent"


def test_switching_the_language_relabels_the_window_and_is_kept(
    qtbot: QtBot, desktop: Desktop, tmp_path: Path
) -> None:
    assert desktop.core is not None
    translator = Translator("ru")
    settings_path = tmp_path / "settings.ini"
    window = MainWindow(
        desktop.engine,
        desktop.core,
        settings=Settings(),
        settings_path=settings_path,
        log_dir=tmp_path / "logs",
        translator=translator,
    )
    qtbot.addWidget(window)
    tabs = [window.tabs.tabText(i) for i in range(window.tabs.count())]
    assert tabs == [
        "Лицензия",
        "Аккаунты",
        "Рассылка",
        "Маркетплейс",
        "Тарифы и оплата",
        "Журналы",
        "Настройки",
    ]
    assert window.broadcast_panel.start_button.text() == "Начать"
    assert window.language_actions["ru"].isChecked()

    with qtbot.wait_signal(window.settings.saved):
        window.language_actions["en"].trigger()

    tabs = [window.tabs.tabText(i) for i in range(window.tabs.count())]
    assert tabs == [
        "License",
        "Accounts",
        "Broadcast",
        "Marketplace",
        "Plans and billing",
        "Logs",
        "Settings",
    ]
    assert window.broadcast_panel.start_button.text() == "Start"
    assert window.accounts_panel.send_code_button.text() == "Send code"
    assert window.settings_panel.save_button.text() == "Save"
    assert window.language_actions["en"].isChecked()
    # The choice is written to settings.ini, so the next start speaks English too.
    assert re.search(r"^language = en$", settings_path.read_text(encoding="utf-8"), re.M)
