"""Recipient import: normal forms, duplicates, line-numbered problems, CSV dialects, files."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app import recipients as recipients_module
from app.recipients import (
    MAX_LISTED_PROBLEMS,
    InvalidRecipient,
    RecipientFileError,
    RecipientProblem,
    load_recipients_file,
    normalise_recipient,
    parse_recipients_csv,
    parse_recipients_text,
)

NORMAL_FORM = re.compile(r"@[a-z][a-z0-9_]{4,31}|\+[0-9]{7,15}|[1-9][0-9]*")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("@Durov_Pavel", "@durov_pavel"),
        ("durov", "@durov"),
        ("t.me/Durov", "@durov"),
        ("https://t.me/durov/", "@durov"),
        ("http://www.t.me/durov?start=1", "@durov"),
        ("telegram.me/durov", "@durov"),
        ("t.me/+79991234567", "+79991234567"),
        ("+7 (999) 123-45-67", "+79991234567"),
        ("+1-555-000-1111", "+15550001111"),
        ("  +4420 7946 0958  ", "+442079460958"),
        ("123456789", "123456789"),
        ("007", "7"),
        ("\u200b@durov\u200e", "@durov"),
        ("a" * 32, "@" + "a" * 32),
        ("a1_b2", "@a1_b2"),
    ],
)
def test_normal_forms(value: str, expected: str) -> None:
    assert normalise_recipient(value) == expected


@pytest.mark.parametrize(
    ("value", "reason_part"),
    [
        ("@abcd", "5 to 32"),
        ("@" + "a" * 33, "5 to 32"),
        ("@1abcde", "starts with a letter"),
        ("@_abcde", "starts with a letter"),
        ("@abcde_", "does not end with _"),
        ("@ab__cd", "two _"),
        ("@ab-cde", "Latin letters"),
        ("@пользователь", "Latin letters"),
        ("+123456", "7 to 15 digits"),
        ("+1234567890123456", "7 to 15 digits"),
        ("+7 999 abc", "7 to 15 digits"),
        ("0", "from 1 to"),
        ("-1001234567", "group or channel"),
        ("t.me/+AbCdEf", "invite link"),
        ("t.me/joinchat/AbCdEf", "invite link"),
        ("t.me/s/durov", "profile"),
        ("8 (999) 123-45-67", "country code"),
        ("john@example.com", "not a @username"),
        ("", "empty"),
        ("1099511627776", "from 1 to 1099511627775"),  # 2^40: kurigram cannot address it
    ],
)
def test_invalid_values_say_why(value: str, reason_part: str) -> None:
    with pytest.raises(InvalidRecipient) as caught:
        normalise_recipient(value)
    assert reason_part in str(caught.value)


def test_phone_column_accepts_numbers_without_plus() -> None:
    assert normalise_recipient("79991234567", phone_column=True) == "+79991234567"
    assert normalise_recipient("79991234567") == "79991234567"  # elsewhere a user id


def test_the_largest_user_id_kurigram_can_address_is_accepted() -> None:
    assert normalise_recipient("1099511627775") == "1099511627775"


# --- pasted text --------------------------------------------------------------------------------


def test_pasted_text_splits_dedupes_and_numbers_lines() -> None:
    result = parse_recipients_text(
        "@Alice_1, @bob_22 @carol_3\n"
        "\n"
        "+7 (999) 123-45-67; ALICE_1\r\n"
        "ab, t.me/alice_1\r"
        "12345\t-5 12345\n"
    )
    assert result.recipients == ("@alice_1", "@bob_22", "@carol_3", "+79991234567", "12345")
    assert result.duplicates == 3
    assert [(e.line, e.value) for e in result.errors] == [(4, "ab"), (5, "-5")]
    assert "5 to 32" in result.errors[0].reason
    assert str(result.errors[0]).startswith("line 4: 'ab': ")


def test_pasted_text_bom_and_empty_input() -> None:
    assert parse_recipients_text("\ufeff@alice_1\n").recipients == ("@alice_1",)
    empty = parse_recipients_text(" \n\n ,, ;\n")
    assert (empty.recipients, empty.duplicates, empty.errors) == ((), 0, ())


# --- CSV ----------------------------------------------------------------------------------------


def test_csv_header_selects_named_column() -> None:
    # "id" is a row number here: the "username" column is preferred.
    text = "id,Username,city\n1,@alice_1,Riga\n2,bob_22,Oslo\n3,,Rome\n4,@alice_1,Kyiv\n"
    result = parse_recipients_csv(text)
    assert result.recipients == ("@alice_1", "@bob_22")
    assert result.duplicates == 1
    assert [(e.line, e.value) for e in result.errors] == [(4, "3,,Rome")]
    assert "'Username' column is empty" in result.errors[0].reason


def test_csv_without_header_takes_first_column_and_reports_line() -> None:
    result = parse_recipients_csv("@alice_1,x\n\nnope,y\n@bob_22,z\n")
    assert result.recipients == ("@alice_1", "@bob_22")
    assert result.errors == (
        RecipientProblem(3, "nope", "recipients.reason.username_length", {"length": 4}),
    )
    assert "5 to 32" in result.errors[0].reason


def test_csv_semicolon_delimiter_bom_and_quotes() -> None:
    text = (
        "\ufeffName;Phone;Note\r\n"
        '"Smith; John";"+7 (999) 123-45-67";"said ""hi"""\r\n'
        "Doe;79991234568;\r\n"
        ";;\r\n"
        'Roe;"+1 555\n000 1111";multi-line cell\r\n'
        "Bad;+12;x\r\n"
    )
    result = parse_recipients_csv(text)
    assert result.recipients == ("+79991234567", "+79991234568", "+15550001111")
    # The phone of "Roe" spans lines 5-6; the next row starts on line 7.
    assert [(e.line, e.value) for e in result.errors] == [(7, "+12")]


def test_csv_tab_delimiter_and_header_case() -> None:
    result = parse_recipients_csv("note\tRECIPIENT\nx\t@alice_1\ny\t+15550001111\n")
    assert result.recipients == ("@alice_1", "+15550001111")
    assert result.errors == ()


def test_csv_first_row_that_is_data_is_imported() -> None:
    result = parse_recipients_csv("@alice_1;1\n@bob_22;2\n")
    assert result.recipients == ("@alice_1", "@bob_22")


def test_csv_short_row_is_reported() -> None:
    result = parse_recipients_csv("note,phone\nx,+15550001111\ny\n")
    assert result.recipients == ("+15550001111",)
    assert [(e.line, e.value) for e in result.errors] == [(3, "y")]


# --- limits -------------------------------------------------------------------------------------


def test_recipient_cap_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(recipients_module, "MAX_RECIPIENTS", 3)
    result = parse_recipients_text("1\n2\n2\n3\n4\n5\n")
    assert result.recipients == ("1", "2", "3")
    assert result.duplicates == 1
    assert [(e.line, e.value) for e in result.errors] == [(5, "4")]
    assert "more than 3 recipients" in result.errors[0].reason
    csv_result = parse_recipients_csv("id\n1\n2\n3\n4\n5\n")
    assert csv_result.recipients == ("1", "2", "3")
    assert [e.line for e in csv_result.errors] == [5]


def test_problem_list_is_capped_and_counted() -> None:
    result = parse_recipients_text("x\n" * (MAX_LISTED_PROBLEMS + 7))
    assert len(result.errors) == MAX_LISTED_PROBLEMS
    assert result.unlisted_errors == 7


def test_long_value_is_shortened_in_problems() -> None:
    result = parse_recipients_text("x" * 500)
    assert len(result.errors[0].value) == 100
    assert result.errors[0].value.endswith("…")


# --- files --------------------------------------------------------------------------------------


def test_load_csv_file_with_bom(tmp_path: Path) -> None:
    path = tmp_path / "list.csv"
    path.write_bytes(b"\xef\xbb\xbfusername;x\r\n@alice_1;1\r\n")
    assert load_recipients_file(path).recipients == ("@alice_1",)


def test_load_text_file_and_forced_kind(tmp_path: Path) -> None:
    path = tmp_path / "list.txt"
    path.write_text("@alice_1 @bob_22\n", encoding="utf-8")
    assert load_recipients_file(path).recipients == ("@alice_1", "@bob_22")
    # As CSV the line is one cell, which is not one recipient.
    as_csv = load_recipients_file(path, kind="csv")
    assert as_csv.recipients == ()
    assert [e.line for e in as_csv.errors] == [1]


def test_load_utf16_file(tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    path.write_bytes("recipient\r\n@alice_1\r\n".encode("utf-16"))
    assert load_recipients_file(path).recipients == ("@alice_1",)


def test_non_utf8_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "cp1251.csv"
    path.write_bytes("получатель\n@alice_1\n".encode("cp1251"))
    with pytest.raises(RecipientFileError) as caught:
        load_recipients_file(path)
    assert caught.value.path == path
    assert str(path) in str(caught.value)
    assert "not UTF-8" in str(caught.value)


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "nope.csv"
    with pytest.raises(RecipientFileError, match="does not exist") as caught:
        load_recipients_file(path)
    assert str(path) in str(caught.value)
    assert caught.value.key == "oserror.not_found"


# --- properties ---------------------------------------------------------------------------------

_alphabet = st.sampled_from(list("@+t.me/:,;\t\r\n \"'()-_019aZ\ufeff\u200bэ\x00"))
_texts = st.one_of(st.text(), st.text(alphabet=_alphabet))


def _check(result: object) -> None:
    from app.recipients import RecipientImport

    assert isinstance(result, RecipientImport)
    assert len(set(result.recipients)) == len(result.recipients)
    assert all(NORMAL_FORM.fullmatch(r) for r in result.recipients)
    assert result.duplicates >= 0
    assert all(e.line >= 1 for e in result.errors)


@settings(max_examples=300, deadline=None)
@given(_texts)
def test_parsing_never_raises(text: str) -> None:
    _check(parse_recipients_text(text))
    _check(parse_recipients_csv(text))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["@alice_1", "bob_22", "+15550001111", "42", "x"]), max_size=30))
def test_text_counts_add_up(values: list[str]) -> None:
    result = parse_recipients_text("\n".join(values))
    valid = [v for v in values if v != "x"]
    assert len(result.recipients) + result.duplicates == len(valid)
    assert len(result.errors) == values.count("x")
    assert [e.line for e in result.errors] == [i + 1 for i, v in enumerate(values) if v == "x"]


def test_pasted_local_phone_number_is_one_problem_not_several_ids() -> None:
    result = parse_recipients_text("8 (999) 123-45-67\n8 999 123-45-67\n")
    assert result.recipients == ()
    assert [(e.line, e.value) for e in result.errors] == [
        (1, "8 (999) 123-45-67"),
        (2, "8 999 123-45-67"),
    ]
    assert all("country code" in e.reason for e in result.errors)
