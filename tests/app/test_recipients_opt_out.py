"""The CSV opt-out convention: an ``opt_out`` or ``status`` column marks rows as opted out."""

from __future__ import annotations

import pytest

from app.recipients import parse_recipients_csv, parse_recipients_text


@pytest.mark.parametrize("mark", ["1", "yes", "Y", "true", "x", "да", " YES "])
def test_a_yes_in_the_opt_out_column_keeps_the_row_out_of_the_list(mark: str) -> None:
    result = parse_recipients_csv(f"username;opt_out\n@alice_smith;\n@bob_jones;{mark}\n")
    assert result.recipients == ("@alice_smith",)
    assert result.opted_out == ("@bob_jones",)
    assert result.errors == ()


@pytest.mark.parametrize("value", ["", "0", "no", "нет", "false"])
def test_anything_else_in_the_opt_out_column_is_a_recipient(value: str) -> None:
    result = parse_recipients_csv(f"recipient,opted_out\n@alice_smith,{value}\n")
    assert result.recipients == ("@alice_smith",)
    assert result.opted_out == ()


def test_a_status_column_marks_opt_outs_by_word() -> None:
    text = (
        "phone,status\n"
        "+7 999 123-45-67,active\n"
        "+7 999 123-45-68,Unsubscribed\n"
        "+7 999 123-45-69,opted-out\n"
        "+7 999 123-45-70,STOP\n"
    )
    result = parse_recipients_csv(text)
    assert result.recipients == ("+79991234567",)
    assert result.opted_out == ("+79991234568", "+79991234569", "+79991234570")


def test_an_opt_out_anywhere_wins_over_the_same_person_listed_elsewhere() -> None:
    text = "username,opt_out\n@alice_smith,\n@carol_white,\n@alice_smith,yes\n@carol_white,\n"
    result = parse_recipients_csv(text)
    assert result.recipients == ("@carol_white",)
    assert result.opted_out == ("@alice_smith",)
    assert result.duplicates == 1  # the second @carol_white


def test_without_a_header_or_in_pasted_text_there_are_no_opt_outs() -> None:
    assert parse_recipients_csv("@alice_smith,yes\n").opted_out == ()
    pasted = parse_recipients_text("@alice_smith\n@bob_jones")
    assert pasted.recipients == ("@alice_smith", "@bob_jones") and pasted.opted_out == ()
