"""CloudPayments' notifications (and the transactions its API returns) read into billing's events.

CloudPayments posts each notification type to its own URL (set in its back office), form-encoded
or JSON; the fields do not say which type they are. So the webhook side adds the type under
:data:`NOTIFICATION_TYPE` (``"pay"``, ``"fail"``, … from the URL it arrived at; the case does not
matter) before handing the fields over. An event's id is ``"<TransactionId>:<Type>"``:
CloudPayments retries a notification with the same TransactionId, and the reconciler's truth
about a transaction gets the same id as its notification.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from ..contract import EventKind, ProviderEvent, ProviderName
from ..declines import cloudpayments_decline_is_hard
from .amounts import MINOR_UNIT_EXPONENTS, major_to_minor

#: The key under which the webhook side names the notification's type (the inbox stores it in
#: the payload: services/webhooks/ports.py).
NOTIFICATION_TYPE: Final = "NotificationKind"
NOTIFICATION_TYPES: Final = frozenset(
    {"Check", "Pay", "Fail", "Confirm", "Refund", "Cancel", "Recurrent"}
)
#: ``JsonData``/``Data`` marker of what a payment was opened for (CloudPayments echoes it).
PURPOSE: Final = "tgflow"
CHECKOUT: Final = "checkout"
#: A zero-amount checkout (a trial) authorizes this small amount, never captured, to keep the
#: card: CloudPayments opens no order for nothing.
VERIFY: Final = "verify"
CHARGE: Final = "charge"
#: Recurrent statuses that end the customer's recurring agreement.
AGREEMENT_ENDED: Final = frozenset({"Cancelled", "Rejected", "Expired"})


@dataclass(frozen=True)
class CheckRequest:
    """CloudPayments' synchronous Check, read: billing answers 0 (accept), 10 (unknown
    invoice), 12 (wrong amount) or 13 (reject)."""

    invoice_id: str | None
    subscription_id: str | None
    amount_minor: int
    currency: str
    transaction_id: str | None = None


def _text(fields: Mapping[str, Any], name: str) -> str | None:
    value = fields.get(name)
    if isinstance(value, bool) or value is None:
        return None
    text = str(value).strip()
    return text or None


def purpose(fields: Mapping[str, Any]) -> str | None:
    """The ``tgflow`` marker of the payment's ``Data`` (a JSON object, or its text in a
    form-encoded notification)."""
    data = fields.get("Data", fields.get("JsonData"))
    if isinstance(data, str):
        try:
            data = json.loads(data)
        except ValueError:
            return None
    if not isinstance(data, Mapping):
        return None
    value = data.get(PURPOSE)
    return value if isinstance(value, str) else None


def occurred_at(fields: Mapping[str, Any], *names: str) -> datetime:
    """CloudPayments' times: ``2024-05-01 12:30:00`` (UTC) in notifications, ISO 8601 in the
    ``…Iso`` fields of the API."""
    for name in names:
        text = _text(fields, name)
        if text is None:
            continue
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            continue
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    raise ValueError(f"a CloudPayments notification has a time ({', '.join(names)})")


def _amount(fields: Mapping[str, Any], currency: str | None) -> int | None:
    value = fields.get("Amount")
    if value is None:
        return None
    if currency is None:
        # A Refund notification names no currency (it is the payment's). Every currency
        # CloudPayments is used with here has the same exponent, so its minor units are known.
        exponents = set(MINOR_UNIT_EXPONENTS.values())
        if len(exponents) != 1:
            return None
        currency = next(c for c in MINOR_UNIT_EXPONENTS)
    return major_to_minor(value, currency)


def notification_event(notification_type: str, fields: Mapping[str, Any]) -> ProviderEvent | None:
    """One notification (or one transaction of the API, typed as its notification would be)."""
    notification_type = notification_type.strip().capitalize()
    if notification_type not in NOTIFICATION_TYPES:
        raise ValueError(f"unknown CloudPayments notification type {notification_type!r}")
    if notification_type == "Check":
        return None  # answered synchronously (read_check), never an event
    if notification_type == "Recurrent":
        return _recurrent_event(fields)
    transaction_id = _text(fields, "TransactionId")
    if transaction_id is None:
        raise ValueError("a CloudPayments notification has a TransactionId")
    currency = (_text(fields, "Currency") or "").upper() or None
    base: dict[str, Any] = {
        "provider": ProviderName.CLOUDPAYMENTS,
        "event_id": f"{transaction_id}:{notification_type}",
        "occurred_at": occurred_at(fields, "DateTime", "ConfirmDateIso", "CreatedDateIso"),
        "invoice_id": _text(fields, "InvoiceId"),
        "subscription_id": _text(fields, "AccountId"),
        "currency": currency,
    }
    if notification_type == "Refund":
        # A refund is its own transaction; PaymentTransactionId is the payment it returns.
        return ProviderEvent(
            kind=EventKind.REFUNDED,
            payment_ref=_text(fields, "PaymentTransactionId"),
            refund_ref=transaction_id,
            amount_minor=_amount(fields, currency),
            **base,
        )
    if notification_type == "Fail":
        reason = _text(fields, "ReasonCode")
        code = int(reason) if reason is not None and reason.isdigit() else None
        return ProviderEvent(
            kind=EventKind.PAYMENT_FAILED,
            payment_ref=transaction_id,
            amount_minor=_amount(fields, currency),
            decline_code=reason or "unknown",
            hard_decline=cloudpayments_decline_is_hard(code),
            **base,
        )
    if notification_type == "Cancel":
        # A two-step payment's authorization was voided: money never moved. Billing opens
        # only one-step payments and the trial's card check (whose void is expected).
        return None
    what = purpose(fields)
    if notification_type == "Pay" and fields.get("Status") == "Authorized" and what != VERIFY:
        return None  # two-step: Confirm says when the money is taken
    token = _text(fields, "Token")
    if what in (CHECKOUT, VERIFY) and token is not None:
        return ProviderEvent(
            kind=EventKind.CHECKOUT_COMPLETED,
            payment_ref=None if what == VERIFY else transaction_id,
            payment_method_ref=token,
            amount_minor=0 if what == VERIFY else _amount(fields, currency),
            **base,
        )
    return ProviderEvent(
        kind=EventKind.PAYMENT_SUCCEEDED,
        payment_ref=transaction_id,
        amount_minor=_amount(fields, currency),
        **base,
    )


def _recurrent_event(fields: Mapping[str, Any]) -> ProviderEvent | None:
    """A CloudPayments subscription changed status. Billing keeps its own subscriptions, so
    only the end of an agreement someone made with CloudPayments directly matters."""
    status = _text(fields, "Status")
    agreement = _text(fields, "Id")
    if status not in AGREEMENT_ENDED or agreement is None:
        return None
    return ProviderEvent(
        provider=ProviderName.CLOUDPAYMENTS,
        event_id=f"{agreement}:Recurrent:{status}",
        kind=EventKind.AGREEMENT_CANCELED,
        occurred_at=occurred_at(
            fields, "DateTime", "LastTransactionDateIso", "StartDateIso", "StartDate"
        ),
        subscription_id=_text(fields, "AccountId"),
    )


def read_check(fields: Mapping[str, Any]) -> CheckRequest:
    """A Check notification's fields. Raises ``ValueError`` (answer 13) when unreadable."""
    currency = (_text(fields, "Currency") or "").upper()
    amount = _amount(fields, currency or None)
    if amount is None:
        raise ValueError("a Check names its Amount and Currency")
    return CheckRequest(
        invoice_id=_text(fields, "InvoiceId"),
        subscription_id=_text(fields, "AccountId"),
        amount_minor=amount,
        currency=currency,
        transaction_id=_text(fields, "TransactionId"),
    )
