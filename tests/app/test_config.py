"""settings.ini: discovery, validation with file/key/reason, and comment-preserving edits."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent.private_files import default_data_dir
from app.antispam import FloodPolicy
from app.config import (
    SECTIONS,
    Settings,
    SettingsError,
    SettingsProblem,
    check_live_settings,
    find_config,
    load_settings,
    parse_settings,
    save_settings,
    section_keys,
)
from app.core_config import Pacing
from app.paths import AppPaths
from app.settings_schema import DEFAULTS, example_text, options, section_parsers

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_FILE = REPO_ROOT / "settings.ini.example"
# A well-formed pin (base64url of 32 zero bytes).
PIN = "sha256/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"


def problems_of(text: str, source: Path) -> tuple[SettingsProblem, ...]:
    with pytest.raises(SettingsError) as caught:
        parse_settings(text, source=source)
    return caught.value.problems


# --- paths --------------------------------------------------------------------------------------


def test_app_paths_under_root_and_ensure(tmp_path: Path) -> None:
    paths = AppPaths.under(tmp_path / "root").ensure()
    assert paths.config_dir == tmp_path / "root" / "config"
    assert paths.data_dir == tmp_path / "root" / "data"
    assert paths.log_dir == tmp_path / "root" / "logs"
    assert all(d.is_dir() for d in (paths.config_dir, paths.data_dir, paths.log_dir))
    assert paths.settings_file == paths.config_dir / "settings.ini"


def test_default_data_dir_is_the_agents() -> None:
    paths = AppPaths.default()
    assert paths.data_dir == default_data_dir()
    assert "TGFlow" in paths.config_dir.parts
    assert "TGFlow" in paths.log_dir.parts


# --- the example --------------------------------------------------------------------------------


def test_the_example_file_is_generated_from_the_schema() -> None:
    assert EXAMPLE_FILE.read_text(encoding="utf-8") == example_text(), (
        "settings.ini.example is stale: run scripts/settings_example.py"
    )


def test_every_key_is_in_the_example_with_its_help_and_default() -> None:
    text = example_text()
    for option in options():
        assert option.parse(option.default) == option.default, option.id
        assert getattr(getattr(DEFAULTS, option.section), option.key) == option.default
    assert text.count(" = ") + text.count(" =\n") == len(list(options()))
    assert "; Messages reserved from the quota per batch.\nbatch_size = 50\n" in text


def test_the_cores_defaults_are_the_schemas() -> None:
    assert Pacing() == Pacing.from_settings(DEFAULTS.broadcast)
    assert FloodPolicy() == FloodPolicy.from_settings(DEFAULTS)
    changed = parse_settings("[flood]\ncooldown_sec = 60\n[anti_spam]\nenabled = false\n")
    assert FloodPolicy.from_settings(changed) == FloodPolicy(cooldown_sec=60, enabled=False)


def test_example_parses_to_the_defaults() -> None:
    settings = load_settings(EXAMPLE_FILE)
    assert settings.source == EXAMPLE_FILE
    assert dataclasses.replace(settings, source=None) == Settings()
    assert settings.ui.language == "ru"
    assert settings.telemetry.enabled is False
    assert settings.anti_spam.enabled is True
    assert (settings.broadcast.min_delay_sec, settings.broadcast.max_delay_sec) == (3.0, 7.0)
    assert settings.broadcast.batch_size == 50
    assert (settings.flood.max_consecutive_errors, settings.flood.cooldown_sec) == (3, 300)
    assert settings.license.jwt_public_key_fingerprint == ()
    assert settings.telegram.api_id is None


def test_none_gives_defaults() -> None:
    assert load_settings(None) == Settings()
    assert load_settings(None).source is None


# --- the model ----------------------------------------------------------------------------------


def test_import_is_light() -> None:
    # settings.ini is validated before the window is shown (docs/desktop.md, "Start-up").
    code = (
        "import sys, app.config; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pydantic', 'configupdater')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("section", SECTIONS)
def test_every_key_has_a_parser(section: str) -> None:
    model = SECTIONS[section]
    assert tuple(section_parsers(model)) == section_keys(model)
    assert set(model.RULES) | {other for other, _ in model.RULES.values()} <= set(
        section_keys(model)
    )


# --- discovery ----------------------------------------------------------------------------------


def test_discovery_order(tmp_path: Path) -> None:
    exe_dir, config_dir = tmp_path / "exe", tmp_path / "config"
    exe_dir.mkdir()
    config_dir.mkdir()
    assert find_config(None, executable_dir=exe_dir, config_dir=config_dir) is None

    (config_dir / "settings.ini").write_text("")
    assert find_config(None, executable_dir=exe_dir, config_dir=config_dir) == (
        config_dir / "settings.ini"
    )
    assert find_config(None, executable_dir=None, config_dir=config_dir) == (
        config_dir / "settings.ini"
    )

    (exe_dir / "settings.ini").write_text("")
    assert find_config(None, executable_dir=exe_dir, config_dir=config_dir) == (
        exe_dir / "settings.ini"
    )

    explicit = tmp_path / "mine.ini"
    explicit.write_text("")
    assert find_config(explicit, executable_dir=exe_dir, config_dir=config_dir) == explicit


def test_source_run_ignores_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "settings.ini").write_text("")
    monkeypatch.chdir(tmp_path)
    assert find_config(None, executable_dir=None, config_dir=tmp_path / "nowhere") is None


@pytest.mark.parametrize("kind", ["missing", "directory"])
def test_explicit_config_must_be_a_file(tmp_path: Path, kind: str) -> None:
    explicit = tmp_path / "given.ini"
    if kind == "directory":
        explicit.mkdir()
    (tmp_path / "settings.ini").write_text("")
    with pytest.raises(SettingsError) as caught:
        find_config(explicit, executable_dir=tmp_path, config_dir=tmp_path)
    assert str(explicit) in str(caught.value)
    assert "--config" in str(caught.value)


# --- validation ---------------------------------------------------------------------------------

BAD_VALUES = [
    ("license", "api_base_url", "http://example.com", "https://"),
    ("license", "api_base_url", "", "required"),
    ("license", "jwt_public_key_fingerprint", f"{PIN}, sha256/short", "sha256/short"),
    ("license", "jwt_public_key_fingerprint", "md5/abc", "md5/abc"),
    ("flood", "max_consecutive_errors", "0", "from 1 to 100"),
    ("flood", "max_consecutive_errors", "101", "from 1 to 100"),
    ("flood", "max_consecutive_errors", "three", "'three'"),
    ("flood", "cooldown_sec", "86401", "from 1 to 86400"),
    ("flood", "cooldown_sec", "", "required"),
    ("anti_spam", "enabled", "maybe", "true or false"),
    ("telegram", "api_id", "abc", "'abc'"),
    ("telegram", "api_id", "-5", "'-5'"),
    ("broadcast", "min_delay_sec", "-1", "from 0 to 3600"),
    ("broadcast", "max_delay_sec", "3601", "3600"),
    ("broadcast", "max_delay_sec", "nan", "'nan'"),
    ("broadcast", "min_delay_sec", "2,5", "dot"),
    ("broadcast", "batch_size", "1001", "from 1 to 1000"),
    ("telemetry", "enabled", "2", "true or false"),
    ("ui", "language", "de", "ru or en"),
    ("ui", "language", "en ; English", "own"),
]


@pytest.mark.parametrize(("section", "key", "value", "reason_part"), BAD_VALUES)
def test_bad_value_names_file_key_and_reason(
    tmp_path: Path, section: str, key: str, value: str, reason_part: str
) -> None:
    source = tmp_path / "settings.ini"
    problems = problems_of(f"[{section}]\n{key} = {value}\n", source)
    assert [(p.file, p.section, p.key) for p in problems] == [(source, section, key)]
    assert reason_part in problems[0].reason
    with pytest.raises(SettingsError) as caught:
        parse_settings(f"[{section}]\n{key} = {value}\n", source=source)
    assert f"{source}: [{section}] {key}: " in str(caught.value)


def test_api_hash_is_not_echoed(tmp_path: Path) -> None:
    secret = "0123456789abcdef0123456789abcdeZ"
    problems = problems_of(f"[telegram]\napi_id = 1\napi_hash = {secret}\n", tmp_path / "s.ini")
    assert [(p.section, p.key) for p in problems] == [("telegram", "api_hash")]
    assert secret not in problems[0].reason
    assert "32 hexadecimal" in problems[0].reason


@pytest.mark.parametrize(
    ("api_id", "api_hash", "message"),
    [("12345", "", "api_id is set"), ("", "ab" * 16, "api_id is empty")],
)
def test_api_id_and_hash_go_together(
    tmp_path: Path, api_id: str, api_hash: str, message: str
) -> None:
    text = f"[telegram]\napi_id = {api_id}\napi_hash = {api_hash}\n"
    problems = problems_of(text, tmp_path / "s.ini")
    assert [(p.key, message in p.reason) for p in problems] == [("api_hash", True)]


def test_min_delay_above_max_is_reported(tmp_path: Path) -> None:
    problems = problems_of(
        "[broadcast]\nmin_delay_sec = 10\nmax_delay_sec = 5\n", tmp_path / "s.ini"
    )
    assert [(p.section, p.key) for p in problems] == [("broadcast", "max_delay_sec")]
    assert "min_delay_sec" in problems[0].reason
    # Against the default minimum (3) too.
    problems = problems_of("[broadcast]\nmax_delay_sec = 2\n", tmp_path / "s.ini")
    assert "less than min_delay_sec (3)" in problems[0].reason


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    source = tmp_path / "settings.ini"
    text = (
        "[flood]\ncooldown_sec = 0\ncolour = red\n"
        "[telemetri]\nenabled = true\n"
        "[DEFAULT]\nx = 1\n"
        "[ui]\nlanguage = fr\n"
    )
    with pytest.raises(SettingsError) as caught:
        parse_settings(text, source=source)
    problems = caught.value.problems
    assert [(p.section, p.key) for p in problems] == [
        ("flood", "colour"),
        ("flood", "cooldown_sec"),
        ("telemetri", None),
        ("DEFAULT", None),
        ("ui", "language"),
    ]
    assert "unknown key" in problems[0].reason
    assert "did you mean 'telemetry'" in problems[2].reason
    message = str(caught.value)
    assert message.startswith("invalid settings (5 problems):")
    for problem in problems:
        assert str(problem) in message
        assert str(source) in str(problem)


def test_values_are_typed(tmp_path: Path) -> None:
    text = (
        f"[license]\napi_base_url = https://licence.example/api/\n"
        f"jwt_public_key_fingerprint = {PIN},\n  {PIN}\n"
        "[anti_spam]\nenabled = OFF\n"
        "[telemetry]\nenabled = yes\n"
        f"[telegram]\napi_id = 12345\napi_hash = {'AB' * 16}\n"
        "[broadcast]\nmin_delay_sec = 0.5\nmax_delay_sec = 0.5\nbatch_size = 1\n"
        "[ui]\nlanguage = EN\n"
    )
    settings = parse_settings(text, source=tmp_path / "s.ini")
    assert settings.license.api_base_url == "https://licence.example/api"
    assert settings.license.jwt_public_key_fingerprint == (PIN,)
    assert settings.anti_spam.enabled is False
    assert settings.telemetry.enabled is True
    assert settings.telegram.api_id == 12345
    assert settings.telegram.api_hash == "ab" * 16
    assert "api_hash" not in repr(settings.telegram)
    assert settings.broadcast.min_delay_sec == settings.broadcast.max_delay_sec == 0.5
    assert settings.ui.language == "en"
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.ui.language = "ru"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "line", "section", "key", "reason_part"),
    [
        ("[flood]\ncooldown_sec = 1\ncooldown_sec = 2\n", 3, "flood", "cooldown_sec", "twice"),
        ("[flood]\nCOOLDOWN_SEC = 1\ncooldown_sec = 2\n", 3, "flood", "cooldown_sec", "twice"),
        ("[ui]\n[flood]\n[ui]\n", 3, "ui", None, "twice"),
        ("language = en\n[ui]\n", 1, None, None, "'language = en'"),
        ("[ui]\nlanguage = en\njust words\n", 3, None, None, "'just words'"),
    ],
)
def test_unparseable_file_names_the_line(
    tmp_path: Path, text: str, line: int, section: str | None, key: str | None, reason_part: str
) -> None:
    source = tmp_path / "s.ini"
    problems = problems_of(text, source)
    assert [(p.line, p.section, p.key) for p in problems] == [(line, section, key)]
    assert reason_part in problems[0].reason
    assert f"{source}, line {line}" in str(problems[0])


def test_unreadable_files_are_problems_not_tracebacks(tmp_path: Path) -> None:
    latin1 = tmp_path / "latin1.ini"
    latin1.write_bytes("[ui]\n; r\xe9glages\nlanguage = en\n".encode("latin-1"))
    with pytest.raises(SettingsError, match="is not UTF-8 text") as caught:
        load_settings(latin1)
    assert str(latin1) in str(caught.value)
    missing = tmp_path / "missing.ini"
    with pytest.raises(SettingsError, match="cannot be read") as caught:
        load_settings(missing)
    assert str(missing) in str(caught.value)


def test_bom_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "s.ini"
    path.write_bytes(b"\xef\xbb\xbf[ui]\r\nlanguage = en\r\n")
    assert load_settings(path).ui.language == "en"


def test_live_use_needs_a_pin(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"\[license\] jwt_public_key_fingerprint"):
        check_live_settings(Settings())
    check_live_settings(parse_settings(f"[license]\njwt_public_key_fingerprint = {PIN}\n"))


# --- editing ------------------------------------------------------------------------------------

USER_FILE = """\
; my own notes
[flood]
; keep this comment
cooldown_sec = 600

# and this one
[telemetry]
enabled = yes

[broadcast]
max_delay_sec = 9
"""


def test_save_keeps_comments_order_and_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "settings.ini"
    path.write_text(USER_FILE, encoding="utf-8")
    settings = save_settings(
        path,
        {
            ("flood", "cooldown_sec"): "900",
            ("flood", "max_consecutive_errors"): "5",
            ("ui", "language"): "en",
        },
    )
    assert settings.flood.cooldown_sec == 900
    assert settings.source == path
    text = path.read_text(encoding="utf-8")
    assert text == (
        "; my own notes\n"
        "[flood]\n"
        "; keep this comment\n"
        "cooldown_sec = 900\n"
        "; Errors in a row (PeerFlood, timeouts) after which an account is Excluded until "
        "restored.\n"
        "max_consecutive_errors = 5\n"
        "\n"
        "# and this one\n"
        "[telemetry]\n"
        "enabled = yes\n"
        "\n"
        "[broadcast]\n"
        "max_delay_sec = 9\n"
        "\n"
        "[ui]\n"
        "; Language of the window: ru (Russian) or en (English).\n"
        "language = en\n"
    )
    assert load_settings(path) == settings
    assert not [p for p in tmp_path.iterdir() if p.name != "settings.ini"]  # no temp file left


def test_save_keeps_bom_and_crlf(tmp_path: Path) -> None:
    path = tmp_path / "settings.ini"
    path.write_bytes(b"\xef\xbb\xbf[ui]\r\n; mine\r\nlanguage = ru\r\n")
    save_settings(path, {("ui", "language"): "en"})
    assert path.read_bytes() == b"\xef\xbb\xbf[ui]\r\n; mine\r\nlanguage = en\r\n"


@pytest.mark.parametrize(
    ("changes", "key", "reason_part"),
    [
        ({("flood", "cooldown_sec"): "0"}, "cooldown_sec", "from 1 to 86400"),
        ({("broadcast", "min_delay_sec"): "20"}, "max_delay_sec", "min_delay_sec"),
        ({("flood", "colour"): "red"}, "colour", "unknown key"),
        ({("colours", "x"): "red"}, "x", "unknown section"),
        ({("ui", "language"): "en\n[flood]"}, "language", "one line"),
    ],
)
def test_save_refuses_invalid_changes_leaving_file_identical(
    tmp_path: Path, changes: dict[tuple[str, str], str], key: str, reason_part: str
) -> None:
    path = tmp_path / "settings.ini"
    path.write_text(USER_FILE, encoding="utf-8")
    before = path.read_bytes()
    with pytest.raises(SettingsError) as caught:
        save_settings(path, changes)
    assert path.read_bytes() == before
    assert [p.key for p in caught.value.problems] == [key]
    assert reason_part in caught.value.problems[0].reason
    assert str(path) in str(caught.value)
    assert sorted(tmp_path.iterdir()) == [path]


def test_save_refuses_to_edit_an_unparseable_file(tmp_path: Path) -> None:
    path = tmp_path / "settings.ini"
    path.write_text("[ui]\nlanguage = en\nlanguage = ru\n", encoding="utf-8")
    before = path.read_bytes()
    with pytest.raises(SettingsError, match="line 3"):
        save_settings(path, {("flood", "cooldown_sec"): "10"})
    assert path.read_bytes() == before


def test_save_can_fix_an_invalid_value(tmp_path: Path) -> None:
    path = tmp_path / "settings.ini"
    path.write_text("[flood]\ncooldown_sec = 0\n", encoding="utf-8")
    assert save_settings(path, {("flood", "cooldown_sec"): "30"}).flood.cooldown_sec == 30


def test_save_creates_the_file_from_the_example(tmp_path: Path) -> None:
    path = tmp_path / "config" / "settings.ini"
    settings = save_settings(path, {("telemetry", "enabled"): "true"})
    assert settings.telemetry.enabled is True
    text = path.read_text(encoding="utf-8")
    assert text == example_text().replace(
        "[telemetry]\n; Anonymous usage events to the backend (no recipients, no message text). "
        "Off by default.\nenabled = false\n",
        "[telemetry]\n; Anonymous usage events to the backend (no recipients, no message text). "
        "Off by default.\nenabled = true\n",
    )
    assert text != example_text()
    if os.name == "posix":
        assert path.stat().st_mode & 0o777 == 0o600


def test_save_keeps_the_file_mode(tmp_path: Path) -> None:
    path = tmp_path / "settings.ini"
    path.write_text(USER_FILE, encoding="utf-8")
    path.chmod(0o640)
    save_settings(path, {("flood", "cooldown_sec"): "1"})
    if os.name == "posix":
        assert path.stat().st_mode & 0o777 == 0o640
    assert "cooldown_sec = 1\n" in path.read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("text", "key", "reason"),
    [
        ("[telegram]\napi_id = 123\n", "[telegram] api_hash", "give both or neither"),
        (
            "[telegram]\napi_hash = 0123456789abcdef0123456789abcdef\n",
            "[telegram] api_hash",
            "give both or neither",
        ),
        ("[broadcast]\nmin_delay_sec = 10\n", "[broadcast] max_delay_sec", "less than min"),
    ],
)
def test_a_rule_between_two_keys_holds_when_one_of_them_is_left_at_its_default(
    text: str, key: str, reason: str
) -> None:
    with pytest.raises(SettingsError) as caught:
        parse_settings(text, source=Path("settings.ini"))
    message = str(caught.value)
    assert key in message and reason in message
