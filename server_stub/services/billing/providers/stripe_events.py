"""Stripe's objects (as webhook JSON or as the SDK returns them) read into billing's events.

Pure functions over mappings: the adapter feeds them webhook payloads (``parse_event``) and the
objects it fetched when asked for the truth (``payment_truth``), so both paths read Stripe alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from ..contract import EventKind, ProviderEvent, ProviderName
from ..declines import stripe_decline_is_hard

#: Stripe event types billing acts on, and what each means.
PAYMENT_INTENT_KINDS = {
    "payment_intent.succeeded": EventKind.PAYMENT_SUCCEEDED,
    "payment_intent.payment_failed": EventKind.PAYMENT_FAILED,
}
CHECKOUT_KINDS = {
    "checkout.session.completed": EventKind.CHECKOUT_COMPLETED,
    "checkout.session.async_payment_succeeded": EventKind.CHECKOUT_COMPLETED,
    "checkout.session.expired": EventKind.CHECKOUT_EXPIRED,
}
REFUND_TYPES = frozenset({"refund.created", "refund.updated", "charge.refunded"})


def timestamp(value: object) -> datetime:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("a Stripe timestamp is an integer of seconds")
    return datetime.fromtimestamp(value, UTC)


def ref(value: object) -> str | None:
    """An id whether the field holds the id or the expanded object."""
    if isinstance(value, Mapping):
        value = value.get("id")
    return value if isinstance(value, str) and value else None


def _metadata(obj: Mapping[str, Any]) -> tuple[str | None, str | None]:
    metadata = obj.get("metadata")
    if not isinstance(metadata, Mapping):
        return None, None
    invoice_id, subscription_id = metadata.get("invoice_id"), metadata.get("subscription_id")
    return (
        invoice_id if isinstance(invoice_id, str) else None,
        subscription_id if isinstance(subscription_id, str) else None,
    )


def _currency(obj: Mapping[str, Any]) -> str | None:
    currency = obj.get("currency")
    return currency.upper() if isinstance(currency, str) else None


def _amount(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def kept_card(session: Mapping[str, Any]) -> str | None:
    """``"pm_…|cus_…"`` from a Checkout Session whose intent is expanded, else ``None``."""
    intent = session.get("setup_intent") if session.get("mode") == "setup" else None
    if intent is None:
        intent = session.get("payment_intent")
    if not isinstance(intent, Mapping):
        return None
    payment_method = ref(intent.get("payment_method"))
    customer = ref(session.get("customer")) or ref(intent.get("customer"))
    return f"{payment_method}|{customer}" if payment_method and customer else None


def _event(
    event_id: str, occurred_at: datetime, obj: Mapping[str, Any], kind: EventKind, **fields: Any
) -> ProviderEvent:
    """What every Stripe event says alike: who we are to it (metadata) and its currency."""
    invoice_id, subscription_id = _metadata(obj)
    return ProviderEvent(
        provider=ProviderName.STRIPE,
        event_id=event_id,
        kind=kind,
        occurred_at=occurred_at,
        invoice_id=invoice_id,
        subscription_id=subscription_id,
        currency=_currency(obj),
        **fields,
    )


def checkout_event(
    event_id: str, occurred_at: datetime, session: Mapping[str, Any], kind: EventKind
) -> ProviderEvent:
    completed = kind is EventKind.CHECKOUT_COMPLETED
    return _event(
        event_id,
        occurred_at,
        session,
        kind,
        payment_ref=ref(session.get("payment_intent")),
        payment_method_ref=kept_card(session) if completed else None,
        # A setup-mode session (a trial) charges nothing: its amount_total is null.
        amount_minor=(_amount(session.get("amount_total")) or 0) if completed else None,
    )


def payment_intent_event(
    event_id: str, occurred_at: datetime, intent: Mapping[str, Any], kind: EventKind
) -> ProviderEvent:
    decline_code: str | None = None
    hard = False
    if kind is EventKind.PAYMENT_FAILED:
        error = intent.get("last_payment_error")
        error = error if isinstance(error, Mapping) else {}
        code = error.get("decline_code") or error.get("code")
        decline_code = code if isinstance(code, str) else "unknown"
        advice = error.get("advice_code")
        hard = stripe_decline_is_hard(decline_code, advice if isinstance(advice, str) else None)
    amount = intent.get("amount_received") if kind is EventKind.PAYMENT_SUCCEEDED else None
    return _event(
        event_id,
        occurred_at,
        intent,
        kind,
        payment_ref=ref(intent.get("id")),
        amount_minor=_amount(amount if amount is not None else intent.get("amount")),
        decline_code=decline_code,
        hard_decline=hard,
    )


def refund_event(
    event_id: str, occurred_at: datetime, refund: Mapping[str, Any]
) -> ProviderEvent | None:
    """A succeeded Refund object; ``None`` while it is pending or when it failed."""
    if refund.get("status") != "succeeded":
        return None
    return _event(
        event_id,
        occurred_at,
        refund,
        EventKind.REFUNDED,
        payment_ref=ref(refund.get("payment_intent")),
        amount_minor=_amount(refund.get("amount")),
        refund_ref=ref(refund.get("id")),
    )


def newest_listed_refund(charge: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """``charge.refunded`` lists the charge's refunds only on old API versions (and when
    expanded); the ``refund.*`` events carry each refund on every version."""
    refunds = charge.get("refunds")
    data = refunds.get("data") if isinstance(refunds, Mapping) else None
    if not isinstance(data, list) or not data or not isinstance(data[0], Mapping):
        return None
    newest: Mapping[str, Any] = data[0]
    # A Refund has metadata of its own; what billing put on the payment is on the Charge.
    metadata = {**_mapping(charge.get("metadata")), **_mapping(newest.get("metadata"))}
    return {"payment_intent": charge.get("payment_intent"), **newest, "metadata": metadata}


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}
