"""Amounts on a provider's wire: our integer minor units to and from decimal major units.

Stripe speaks minor units already (integers); CloudPayments speaks decimal major units
(``10.50`` roubles). The conversion is exact (``Decimal``, never ``float``) and knows each
currency's minor-unit exponent; a currency it does not know is refused, never guessed.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from types import MappingProxyType
from typing import Final

from ..contract import ProviderRefused

#: ISO 4217 minor-unit exponents of the currencies billing charges in.
MINOR_UNIT_EXPONENTS: Final[Mapping[str, int]] = MappingProxyType({"RUB": 2, "USD": 2, "EUR": 2})


class UnsupportedCurrency(ProviderRefused, ValueError):
    """A currency whose minor unit is not known here (nothing was sent; a payload naming it is
    unreadable)."""


class InexactAmount(ProviderRefused, ValueError):
    """A major-unit amount that is not a whole number of minor units (or not a number)."""


def minor_unit_exponent(currency: str) -> int:
    exponent = MINOR_UNIT_EXPONENTS.get(currency.upper())
    if exponent is None:
        raise UnsupportedCurrency(f"currency {currency!r} is not supported")
    return exponent


def minor_to_major(amount_minor: int, currency: str) -> Decimal:
    """``1050, "RUB"`` → ``Decimal("10.50")``."""
    if isinstance(amount_minor, bool) or not isinstance(amount_minor, int):
        raise InexactAmount("an amount in minor units must be an integer")
    exponent = minor_unit_exponent(currency)
    return Decimal(amount_minor).scaleb(-exponent)


def major_to_minor(value: object, currency: str) -> int:
    """``"10.50"`` (or ``Decimal``/``int``; a JSON ``float`` by its shortest repr) → ``1050``."""
    exponent = minor_unit_exponent(currency)
    if isinstance(value, bool):
        raise InexactAmount("an amount may not be a boolean")
    if isinstance(value, float):
        # A float parsed from JSON prints back as the shortest decimal that reads as it: the
        # text the provider sent, for any amount with fewer than 16 significant digits.
        value = repr(value)
    if not isinstance(value, Decimal | int | str):
        raise InexactAmount("an amount must be a decimal number")
    try:
        scaled = Decimal(value).scaleb(exponent)
    except (InvalidOperation, ValueError) as exc:
        raise InexactAmount("an amount must be a decimal number") from exc
    if not scaled.is_finite() or scaled != scaled.to_integral_value():
        raise InexactAmount(f"{value} is not a whole number of {currency} minor units")
    return int(scaled)


def format_major(amount: Decimal) -> str:
    """A major-unit amount as JSON number text (``10.50``), never in exponent notation."""
    return format(amount, "f")
