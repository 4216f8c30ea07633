"""The INN check digits (a pure function: no backend needed)."""

from __future__ import annotations

import pytest

from server_stub.services.clients.inn import inn_problem, is_valid_inn
from tests.helpers.clients import LEGAL_INN, PERSONAL_INN, make_inn


@pytest.mark.parametrize("inn", [LEGAL_INN, PERSONAL_INN, make_inn(5), make_inn(5, personal=True)])
def test_valid_inns(inn: str) -> None:
    assert inn_problem(inn) is None and is_valid_inn(inn)


@pytest.mark.parametrize("position", range(10))
def test_any_wrong_digit_of_a_legal_entitys_inn_is_caught(position: int) -> None:
    digit = int(LEGAL_INN[position])
    wrong = LEGAL_INN[:position] + str((digit + 1) % 10) + LEGAL_INN[position + 1 :]
    assert not is_valid_inn(wrong)


@pytest.mark.parametrize("position", [0, 5, 9, 10, 11])
def test_a_wrong_digit_of_an_entrepreneurs_inn_is_caught(position: int) -> None:
    digit = int(PERSONAL_INN[position])
    wrong = PERSONAL_INN[:position] + str((digit + 3) % 10) + PERSONAL_INN[position + 1 :]
    assert not is_valid_inn(wrong)


@pytest.mark.parametrize(
    ("inn", "reason"),
    [
        ("770708389", "10 digits"),
        ("77070838933", "10 digits"),
        ("5001007322590", "10 digits"),
        ("", "10 digits"),
        ("77070838a3", "10 digits"),
        (" 7707083893", "10 digits"),
        ("７７０７０８３８９３", "10 digits"),  # full-width digits are digits to str.isdigit()
        ("٧٧٠٧٠٨٣٨٩٣", "10 digits"),
        ("0000000000", "region"),
        ("000000000000", "region"),
        ("7707083894", "check digit"),
        ("500100732258", "check digits"),
        ("500100732249", "check digits"),
    ],
)
def test_bad_inns_say_why(inn: str, reason: str) -> None:
    problem = inn_problem(inn)
    assert problem is not None and reason in problem, problem
