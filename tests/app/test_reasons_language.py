"""Reasons from the lower layers (a server's problem, a settings file, a CSV line, Telegram, the
session log) in the window's language, by their stable codes; English stays for the CLI."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot

from agent.clock import FakeClock
from agent.errors import InvalidCredentials, UnexpectedResponse
from agent.protocol import ErrorCode
from app.catalog import Reason, english, story
from app.config import SettingsError, load_settings
from app.htmllog import SessionLog, SessionLogHandler
from app.i18n import Translator
from app.main import startup_language
from app.problems import PROBLEM_KEYS, problem_reason
from app.recipients import parse_recipients_text
from app.viewmodels.errors import describe_error, describe_settings_error
from app.viewmodels.logs import localize_log
from app.viewmodels.telegram_text import telegram_text
from tests.helpers.visible_text import foreign


@pytest.fixture(params=["ru", "en"])
def tr(request: pytest.FixtureRequest, qapp: object) -> Translator:
    return Translator(request.param)


def test_every_problem_code_has_a_message() -> None:
    assert set(PROBLEM_KEYS) == {code.value for code in ErrorCode}


def test_a_server_refusal_is_told_by_its_code(tr: Translator) -> None:
    refused = describe_error(InvalidCredentials("Invalid e-mail or password."), tr)
    assert foreign(refused, tr.language) == []
    assert refused == tr.tr("error.invalid_credentials")
    unknown = UnexpectedResponse("POST /x: brand_new: Detail", 418, problem_code="brand_new")
    assert problem_reason(unknown) == Reason("problem.unknown_code", {"code": "brand_new"})
    text = describe_error(unknown, tr)
    assert "brand_new" in text and "Detail" not in text
    assert foreign(text, tr.language) == []
    bare = UnexpectedResponse("GET /y: HTTP 502 without problem details", 502)
    assert "502" in describe_error(bare, tr)


def test_settings_problems_in_the_window_language_and_english_for_the_cli(
    tr: Translator, tmp_path: Path
) -> None:
    path = tmp_path / "settings.ini"
    path.write_text(
        "[broadcast]\nbatch_size = lots\n[ui]\nlanguage = en\n[nope]\n", encoding="utf-8"
    )
    with pytest.raises(SettingsError) as caught:
        load_settings(path)
    shown = describe_settings_error(caught.value, tr)
    assert f"{path}: [broadcast] batch_size: " in shown
    assert foreign(shown, tr.language, data=[str(path)]) == []
    assert "must be a whole number from 1 to 1000, got 'lots'" in str(caught.value)
    # The startup dialog speaks the file's own [ui] language; --lang wins.
    assert startup_language(caught.value, None) == "en"
    assert startup_language(caught.value, "ru") == "ru"


def test_csv_reasons_in_the_window_language(tr: Translator) -> None:
    result = parse_recipients_text("@ab\n+12\n-5\nwhat?\n@bad__name\n")
    assert len(result.errors) == 5
    for problem in result.errors:
        shown = tr.tr(problem.key, **problem.params)
        assert shown != problem.key
        assert foreign(shown, tr.language) == []
    assert result.errors[0].reason == english(result.errors[0].key, **result.errors[0].params)


@pytest.mark.parametrize(
    ("reason", "ru_part"),
    [
        ("USER_IS_BLOCKED", "заблокировал"),
        ("USER_RESTRICTED: Telegram restricted this account; check it with @SpamBot", "огранич"),
        ("BRAND_NEW_ERROR", "Telegram отказал: BRAND_NEW_ERROR"),
        ("FloodWait 42 s", "FloodWait: пауза 42 с"),
        ("PeerFlood (2 of 3 in a row): backing off 600 s", "2 из 3 подряд"),
        ("timeout, delivery unknown: SendTimeout", "доставка неизвестна"),
        ("wrong code", "неверный код"),
        ("Telegram asks to wait 30 s before the next login attempt", "30"),
    ],
)
def test_telegram_reasons_by_their_id_or_form(qapp: object, reason: str, ru_part: str) -> None:
    ru = telegram_text(reason, Translator("ru"))
    assert ru_part in ru
    assert foreign(ru, "ru") == []
    assert foreign(telegram_text(reason, Translator("en")), "en") == []


def test_a_text_of_no_known_form_is_left_as_written(qapp: object) -> None:
    assert telegram_text("my own words", Translator("ru")) == "my own words"


def test_the_session_log_keeps_story_keys_and_is_shown_in_the_window_language(
    qtbot: QtBot, tmp_path: Path
) -> None:
    session = SessionLog(tmp_path, clock=FakeClock())
    handler = SessionLogHandler(session)
    logger = logging.getLogger("tgflow.test_story")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        story(logger, "log.signed_in", email="a@example.com")
        story(
            logger,
            "log.sign_in_failed",
            level=logging.WARNING,
            email="a@example.com",
            reason=Reason("problem.invalid_credentials"),
        )
        logger.warning("a library's own <diagnostic>")
    finally:
        logger.removeHandler(handler)
        session.close()
    text = session.path.read_text(encoding="utf-8")
    # A browser reads English; the keys travel along, escaped.
    assert "signed in as a@example.com" in text
    assert 'data-key="log.signed_in"' in text
    assert "&lt;diagnostic&gt;" in text

    ru = localize_log(text, Translator("ru"))
    assert "вход выполнен как a@example.com" in ru
    assert "вход как a@example.com не удался: неверный e-mail или пароль" in ru
    assert "<th>Уровень</th>" in ru and "предупреждение" in ru and "Сеанс завершён" in ru
    assert "own &lt;diagnostic&gt;" in ru  # as written, still escaped
    assert "<script" not in ru
    assert localize_log(text, Translator("en")).count("signed in as a@example.com") == 1


def test_an_account_state_change_is_told_in_the_window_language(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from app.antispam import AccountState, AccountStatus, _log_transition

    session = SessionLog(tmp_path, clock=FakeClock())
    handler = SessionLogHandler(session)
    logger = logging.getLogger("tgflow.antispam")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        until = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
        _log_transition(AccountStatus("42", AccountState.COOLDOWN, until, 0, "FloodWait 42 s"))
        _log_transition(AccountStatus("42", AccountState.ACTIVE, None, 0, ""))
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        session.close()
    text = session.path.read_text(encoding="utf-8")
    assert "account 42: cooldown until 2026-01-02 03:04:05 UTC (FloodWait 42 s)" in text
    ru = localize_log(text, Translator("ru"))
    assert "аккаунт 42: на паузе до 2026-01-02 03:04:05 UTC (FloodWait: пауза 42 с)" in ru
    assert "аккаунт 42: активен" in ru
