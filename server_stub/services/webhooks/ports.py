"""What the inbox needs from billing, and the names both sides use.

The lead wires billing behind these two Protocols; the tests use fakes.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import IntEnum, StrEnum
from typing import Any, Final, Protocol

from ..billing.contract import ProviderName
from ..billing.providers.cloudpayments_events import NOTIFICATION_TYPE


class CloudPaymentsKind(StrEnum):
    """CloudPayments' notification types; each has its own URL (``/webhooks/cloudpayments/pay``).

    CloudPayments' body does not say which notification it is, so the path does.
    """

    CHECK = "check"
    PAY = "pay"
    FAIL = "fail"
    CONFIRM = "confirm"
    REFUND = "refund"
    CANCEL = "cancel"
    RECURRENT = "recurrent"


#: The field the inbox adds to a CloudPayments payload: the notification's kind (from the path),
#: so an applier reads one mapping; the CloudPayments adapter reads it from there.
CLOUDPAYMENTS_KIND_FIELD: Final = NOTIFICATION_TYPE


class CheckCode(IntEnum):
    """CloudPayments' answers to a Check notification (``{"code": n}``)."""

    OK = 0
    UNKNOWN_ORDER = 10  # Неверный номер заказа
    WRONG_ACCOUNT = 11  # Некорректный AccountId
    WRONG_AMOUNT = 12  # Неверная сумма
    REJECTED = 13  # Платёж не может быть принят
    EXPIRED = 20  # Платёж просрочен


class InvoiceChecker(Protocol):
    """Answers CloudPayments' Check: may this payment be taken? Called while CloudPayments waits
    (the payer's card form), so it must be quick; blocking, off the event loop on PostgreSQL."""

    def check(self, payload: Mapping[str, Any]) -> CheckCode:
        """``payload``: the notification's fields (``InvoiceId``, ``AccountId``, ``Amount``,
        ``Currency``, …) as the inbox stores them."""
        ...


class EventApplier(Protocol):
    """Applies one stored provider event to billing.

    Returns ``True`` when it changed (or confirmed) billing's state, ``False`` when billing does
    not act on this event (stored as ``ignored``); raising means "failed, retry later". It must
    commit its own transaction before it returns, and it must be idempotent (billing: by the
    provider's ``payment_ref``): the inbox calls it at least once per event, and again after a
    worker died between the apply's commit and the inbox's record of it.
    """

    def apply(self, provider: ProviderName, payload: Mapping[str, Any]) -> bool: ...


class NoChecker:
    """Until billing is wired: no order is known, so every Check is refused (fail closed)."""

    def check(self, payload: Mapping[str, Any]) -> CheckCode:
        del payload
        return CheckCode.UNKNOWN_ORDER
