"""The Russian taxpayer number (ИНН) and its check digits, as the Federal Tax Service defines them.

A legal entity's INN has 10 digits, the last a check digit; an individual entrepreneur's has 12,
the last two check digits. Each check digit is a weighted sum of the digits before it, modulo 11,
then modulo 10. The first two digits are the region code, never ``00``.
"""

from __future__ import annotations

import re
from typing import Final

_WEIGHTS_10: Final = (2, 4, 10, 3, 5, 9, 4, 6, 8)
_WEIGHTS_11: Final = (7, 2, 4, 10, 3, 5, 9, 4, 6, 8)
_WEIGHTS_12: Final = (3, 7, 2, 4, 10, 3, 5, 9, 4, 6, 8)
# ASCII digits only: str.isdigit() would also take Arabic-Indic or superscript digits.
_SHAPE: Final = re.compile(r"[0-9]{10}|[0-9]{12}")


def _check_digit(digits: str, weights: tuple[int, ...]) -> int:
    return sum(int(d) * w for d, w in zip(digits, weights, strict=True)) % 11 % 10


def inn_problem(inn: str) -> str | None:
    """Why ``inn`` is not a valid INN, or ``None`` when it is."""
    if not _SHAPE.fullmatch(inn):
        return "an INN is 10 digits (legal entity) or 12 digits (individual entrepreneur)"
    if inn.startswith("00"):
        return "an INN starts with a region code, never 00"
    if len(inn) == 10:
        if _check_digit(inn[:9], _WEIGHTS_10) != int(inn[9]):
            return "the INN's check digit is wrong"
        return None
    if _check_digit(inn[:10], _WEIGHTS_11) != int(inn[10]) or _check_digit(
        inn[:11], _WEIGHTS_12
    ) != int(inn[11]):
        return "the INN's check digits are wrong"
    return None


def is_valid_inn(inn: str) -> bool:
    return inn_problem(inn) is None
