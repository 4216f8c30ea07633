"""The Settings panel: every key has a field, a bad value is shown with the file, the key and the
reason while the file stays as it was, and a good one is saved with the comments kept."""

from __future__ import annotations

from pathlib import Path

import pytest
from PyQt6.QtWidgets import QCheckBox, QComboBox, QLineEdit
from pytestqt.qtbot import QtBot

from app.config import SECTIONS, load_settings, save_settings, section_keys
from app.engine import Engine
from app.i18n import Translator
from app.ui.settings_panel import SettingsPanel
from app.viewmodels.settings import SettingsViewModel

COMMENT = "; my own note about the pause"


@pytest.fixture
def settings_file(tmp_path: Path) -> Path:
    path = tmp_path / "settings.ini"
    save_settings(path, {("broadcast", "min_delay_sec"): "4"})  # created from the example
    text = path.read_text(encoding="utf-8").replace("[broadcast]\n", f"[broadcast]\n{COMMENT}\n", 1)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def panel(qtbot: QtBot, engine: Engine, settings_file: Path) -> SettingsPanel:
    model = SettingsViewModel(engine, Translator("ru"), settings_file)
    widget = SettingsPanel(model, model.translator)
    model.setParent(widget)
    qtbot.addWidget(widget)
    with qtbot.wait_signal(model.loaded):
        model.load()
    return widget


def line_edit(panel: SettingsPanel, section: str, key: str) -> QLineEdit:
    editor = panel.editors[(section, key)]
    assert isinstance(editor, QLineEdit)
    return editor


def test_the_form_has_a_field_for_every_key_with_the_file_values(panel: SettingsPanel) -> None:
    keys = {(section, key) for section, model in SECTIONS.items() for key in section_keys(model)}
    assert set(panel.editors) == keys
    assert line_edit(panel, "broadcast", "min_delay_sec").text() == "4"
    assert line_edit(panel, "broadcast", "max_delay_sec").text() == "7"
    assert isinstance(panel.editors[("anti_spam", "enabled")], QCheckBox)
    language = panel.editors[("ui", "language")]
    assert isinstance(language, QComboBox) and language.currentData() == "ru"


def test_a_bad_value_shows_the_file_key_and_reason_and_leaves_the_file_unchanged(
    qtbot: QtBot, panel: SettingsPanel, settings_file: Path
) -> None:
    before = settings_file.read_bytes()
    editor = line_edit(panel, "broadcast", "max_delay_sec")
    editor.setText("soon")
    with (
        qtbot.assert_not_emitted(panel._vm.saved),
        qtbot.wait_signal(panel._vm.failed) as failed,
    ):
        panel.save_button.click()
    message = failed.args[0]
    assert str(settings_file) in message
    assert "[broadcast] max_delay_sec" in message
    assert "'soon'" in message  # the reason quotes what was typed
    assert not panel.error.isHidden() and panel.error.text() == message
    assert panel.status.text() == "Не сохранено: файл не изменён."
    assert editor.property("invalid") is True
    assert settings_file.read_bytes() == before


def test_a_good_value_is_saved_and_the_comments_are_kept(
    qtbot: QtBot, panel: SettingsPanel, settings_file: Path
) -> None:
    line_edit(panel, "broadcast", "min_delay_sec").setText("2.5")
    checkbox = panel.editors[("telemetry", "enabled")]
    assert isinstance(checkbox, QCheckBox)
    checkbox.setChecked(True)
    with qtbot.wait_signal(panel._vm.saved) as saved:
        panel.save_button.click()
    assert saved.args[0] == {
        ("broadcast", "min_delay_sec"): "2.5",
        ("telemetry", "enabled"): "true",
    }
    text = settings_file.read_text(encoding="utf-8")
    assert COMMENT in text
    assert "; Anonymous usage events to the backend" in text  # the example's comment
    settings = load_settings(settings_file)
    assert settings.broadcast.min_delay_sec == 2.5
    assert settings.telemetry.enabled is True
    assert panel.status.text() == (
        "Сохранено. Изменения вступят в силу при следующем запуске TGFlow."
    )
    assert panel.error.isHidden()


def test_saving_nothing_changed_writes_nothing(
    qtbot: QtBot, panel: SettingsPanel, settings_file: Path
) -> None:
    before = settings_file.stat().st_mtime_ns, settings_file.read_bytes()
    with qtbot.wait_signal(panel._vm.saved) as saved:
        panel.save_button.click()
    assert saved.args == [{}]
    assert (settings_file.stat().st_mtime_ns, settings_file.read_bytes()) == before
    assert panel.status.text() == "Сохранять нечего."


@pytest.mark.parametrize("language", ["ru", "en"])
def test_every_label_is_translated_not_a_raw_key_name(
    qtbot: QtBot, engine: Engine, settings_file: Path, language: str
) -> None:
    model = SettingsViewModel(engine, Translator(language), settings_file)
    widget = SettingsPanel(model, model.translator)
    model.setParent(widget)
    qtbot.addWidget(widget)
    for (section, key), label in widget._labels.items():
        assert label.text(), (section, key)
        assert label.text() != key, f"[{section}] {key} is labelled with its raw name"
    telegram = {key: widget._labels[("telegram", key)].text() for key in ("api_id", "api_hash")}
    if language == "ru":
        assert telegram == {
            "api_id": "Номер приложения (api_id)",
            "api_hash": "Хеш приложения (api_hash)",
        }
    else:
        assert telegram == {
            "api_id": "Application id (api_id)",
            "api_hash": "Application hash (api_hash)",
        }


def test_a_save_asked_for_while_one_runs_waits_and_loses_no_edit(
    qtbot: QtBot, panel: SettingsPanel, settings_file: Path
) -> None:
    model = panel._vm
    first = {("broadcast", "min_delay_sec"): "5"}
    second = {("broadcast", "min_delay_sec"): "5", ("broadcast", "max_delay_sec"): "9"}
    saved: list[dict[tuple[str, str], str]] = []
    model.saved.connect(saved.append)
    last = {("broadcast", "max_delay_sec"): "9"}
    with qtbot.wait_signal(model.saved, check_params_cb=lambda changes: changes == last):
        assert model.save(first)
        assert model.busy
        assert model.save(second)  # waits its turn; not dropped
    # The second wrote only what the first had not already written.
    assert saved == [first, last]
    assert not model.busy
    values = load_settings(settings_file)
    assert values.broadcast.min_delay_sec == 5
    assert values.broadcast.max_delay_sec == 9
