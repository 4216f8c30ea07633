"""RuStore's payment statuses, their order, and what each means to us."""

from __future__ import annotations

from enum import StrEnum
from typing import Final


class InvoiceStatus(StrEnum):
    CREATED = "CREATED"
    EXECUTED = "EXECUTED"
    #: Money put on hold for a consumable: it waits for our confirmation (we confirm it).
    PAID = "PAID"
    #: The final status of a successful payment.
    CONFIRMED = "CONFIRMED"
    CANCELLED = "CANCELLED"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"
    #: A hold released without our confirmation: the money went back, nothing was granted.
    REVERSED = "REVERSED"
    #: A confirmed payment refunded: the points it granted are clawed back.
    REFUNDED = "REFUNDED"


S = InvoiceStatus

#: A status is applied only when its rank is above the one recorded: a late notification of an
#: earlier status never moves a purchase back. Every ending (paid, failed, refunded) outranks
#: every stage before it; a refund or reversal outranks a confirmation.
RANK: Final[dict[InvoiceStatus, int]] = {
    S.CREATED: 0,
    S.EXECUTED: 1,
    S.PAID: 2,
    S.CANCELLED: 3,
    S.REJECTED: 3,
    S.EXPIRED: 3,
    S.CONFIRMED: 3,
    S.REVERSED: 4,
    S.REFUNDED: 4,
}
#: The buyer has not paid yet: a verify answers "pending", not a refusal (a held ``PAID`` is
#: confirmed by the verify itself, so it never stays here).
AWAITING: Final = frozenset({S.CREATED, S.EXECUTED})
#: The money is ours: what the purchase grants is granted.
GRANTING: Final = frozenset({S.CONFIRMED})
#: The money went back: what was granted is taken back.
TAKEN_BACK: Final = frozenset({S.REFUNDED, S.REVERSED})


def parse_status(value: object) -> InvoiceStatus | None:
    """The store's status (its notifications spell it in lower case), or ``None``."""
    if not isinstance(value, str):
        return None
    try:
        return InvoiceStatus(value.upper())
    except ValueError:
        return None
