"""Stripe as a payment processor, through the official ``stripe`` SDK.

Our server keeps the subscription; Stripe only moves money: a Checkout Session takes the first
payment and keeps the card (``setup_future_usage=off_session``; a ``setup``-mode session for a
trial, which charges nothing), a PaymentIntent confirmed off-session charges the kept card later,
a Refund gives money back. Every money-moving call carries our idempotency key as Stripe's
``Idempotency-Key``. The SDK talks to ``api_base`` (the fake Stripe in tests and the demo).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any, TypeVar

import stripe

from ..contract import (
    ChargeOutcome,
    Checkout,
    EventKind,
    ProviderEvent,
    ProviderName,
    ProviderRefused,
    ProviderUnavailable,
    RefundOutcome,
)
from ..declines import stripe_decline_is_hard
from . import stripe_events as ev
from .amounts import minor_unit_exponent

log = logging.getLogger("tgflow.server.billing.stripe")

T = TypeVar("T")

#: The SDK's own retries of a failed connection or a 5xx (same idempotency key, so safe).
DEFAULT_NETWORK_RETRIES = 2


def _call(what: str, request: Callable[[], T]) -> T:
    """One SDK call with Stripe's errors turned into the contract's. A card decline is not an
    error here: :meth:`StripeAdapter.charge` catches ``CardError`` before this does."""
    try:
        return request()
    except (stripe.APIConnectionError, stripe.RateLimitError) as exc:
        raise ProviderUnavailable(f"Stripe {what}: {type(exc).__name__}") from exc
    except stripe.StripeError as exc:
        status = exc.http_status or 0
        if status >= 500 or status == 0:
            raise ProviderUnavailable(f"Stripe {what}: HTTP {status}") from exc
        log.warning("Stripe %s refused: HTTP %s %s", what, status, exc.code)
        raise ProviderRefused(f"Stripe {what}: HTTP {status} {exc.code or ''}".rstrip()) from exc


def _split_card(payment_method_ref: str) -> tuple[str, str]:
    payment_method, sep, customer = payment_method_ref.partition("|")
    if not sep or not payment_method.startswith("pm_") or not customer.startswith("cus_"):
        raise ProviderRefused("a Stripe card reference is 'pm_…|cus_…'")
    return payment_method, customer


class StripeAdapter:
    name = ProviderName.STRIPE

    def __init__(
        self,
        api_key: str,
        *,
        api_base: str = "https://api.stripe.com",
        max_network_retries: int = DEFAULT_NETWORK_RETRIES,
    ) -> None:
        if not api_key:
            raise ValueError("a Stripe API key is required")
        self._client = stripe.StripeClient(
            api_key,
            base_addresses={"api": api_base.rstrip("/")},
            max_network_retries=max_network_retries,
        )

    # --- money ------------------------------------------------------------------------------

    def create_checkout(
        self,
        *,
        invoice_id: str,
        subscription_id: str,
        customer_email: str,
        description: str,
        amount_minor: int,
        currency: str,
        success_url: str,
        cancel_url: str,
        idempotency_key: str,
    ) -> Checkout:
        minor_unit_exponent(currency)  # refuse a currency billing does not know, before sending
        if amount_minor < 0:
            raise ProviderRefused("a checkout cannot charge a negative amount")
        metadata = {"invoice_id": invoice_id, "subscription_id": subscription_id}
        # Our own Customer (found again by its metadata) holds the card for later charges.
        customer = _call(
            "customer",
            lambda: self._client.v1.customers.create(
                params={"email": customer_email, "metadata": metadata},
                options={"idempotency_key": f"{idempotency_key}:customer"},
            ),
        )
        params: dict[str, Any] = {
            "customer": customer.id,
            "success_url": success_url,
            "cancel_url": cancel_url,
            "client_reference_id": invoice_id,
            "metadata": metadata,
            "payment_method_types": ["card"],
        }
        if amount_minor == 0:
            params.update(
                mode="setup",
                currency=currency.lower(),
                setup_intent_data={"description": description, "metadata": metadata},
            )
        else:
            params.update(
                mode="payment",
                line_items=[
                    {
                        "quantity": 1,
                        "price_data": {
                            "currency": currency.lower(),
                            "unit_amount": amount_minor,
                            "product_data": {"name": description},
                        },
                    }
                ],
                payment_intent_data={
                    "setup_future_usage": "off_session",
                    "description": description,
                    "metadata": metadata,
                },
            )
        session = _call(
            "checkout",
            lambda: self._client.v1.checkout.sessions.create(
                params=params,  # type: ignore[arg-type]
                options={"idempotency_key": idempotency_key},
            ),
        )
        if not session.url:
            raise ProviderRefused("Stripe returned a Checkout Session without a URL")
        return Checkout(
            url=session.url,
            checkout_ref=session.id,
            expires_at=ev.timestamp(session.expires_at) if session.expires_at else None,
        )

    def charge(
        self,
        *,
        invoice_id: str,
        subscription_id: str,
        payment_method_ref: str,
        amount_minor: int,
        currency: str,
        description: str,
        idempotency_key: str,
    ) -> ChargeOutcome:
        minor_unit_exponent(currency)
        if amount_minor <= 0:
            raise ProviderRefused("a charge must be of a positive amount")
        payment_method, customer = _split_card(payment_method_ref)
        try:
            intent = _call(
                "charge",
                lambda: self._charge_or_decline(
                    {
                        "amount": amount_minor,
                        "currency": currency.lower(),
                        "customer": customer,
                        "payment_method": payment_method,
                        "off_session": True,
                        "confirm": True,
                        "description": description,
                        "metadata": {"invoice_id": invoice_id, "subscription_id": subscription_id},
                    },
                    idempotency_key,
                ),
            )
        except _Declined as declined:
            return declined.outcome
        if intent.status == "succeeded":
            return ChargeOutcome(succeeded=True, payment_ref=intent.id)
        # requires_action: the bank wants 3-D Secure, which an off-session charge cannot do;
        # processing: the payment_intent.* webhook settles it later.
        code = "authentication_required" if intent.status == "requires_action" else intent.status
        return ChargeOutcome(
            succeeded=False,
            payment_ref=intent.id,
            decline_code=code,
            hard_decline=stripe_decline_is_hard(code),
        )

    def _charge_or_decline(self, params: Mapping[str, Any], idempotency_key: str) -> Any:
        try:
            return self._client.v1.payment_intents.create(
                params=params,  # type: ignore[arg-type]
                options={"idempotency_key": idempotency_key},
            )
        except stripe.CardError as exc:
            body = exc.json_body if isinstance(exc.json_body, Mapping) else {}
            found = body.get("error")
            error: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
            decline = error.get("decline_code") or error.get("code") or exc.code or "card_declined"
            advice = error.get("advice_code")
            raise _Declined(
                ChargeOutcome(
                    succeeded=False,
                    payment_ref=ev.ref(error.get("payment_intent")),
                    decline_code=decline,
                    hard_decline=stripe_decline_is_hard(decline, advice),
                )
            ) from exc

    def refund(
        self, *, payment_ref: str, amount_minor: int, currency: str, idempotency_key: str
    ) -> RefundOutcome:
        minor_unit_exponent(currency)
        if amount_minor <= 0:
            raise ProviderRefused("a refund must be of a positive amount")
        refund = _call(
            "refund",
            lambda: self._client.v1.refunds.create(
                params={"payment_intent": payment_ref, "amount": amount_minor},
                options={"idempotency_key": idempotency_key},
            ),
        )
        return RefundOutcome(
            refund_ref=refund.id,
            amount_minor=refund.amount,
            # A pending refund (some card networks, bank debits) is not yet money back: its
            # refund.updated webhook brings REFUNDED when it succeeds.
            succeeded=refund.status == "succeeded",
        )

    # --- truth -----------------------------------------------------------------------------

    def payment_truth(self, invoice_id: str) -> list[ProviderEvent]:
        """What Stripe knows of our invoice: its Checkout Session (found through the Customer
        made for it), every PaymentIntent carrying it in metadata, and their refunds. Event ids
        are ``truth:<object id>:<kind>``, the same on every ask. Stripe's search is eventually
        consistent (about a minute), which a reconciler's period absorbs."""
        quoted = invoice_id.replace("\\", "\\\\").replace("'", "\\'")
        query = f"metadata['invoice_id']:'{quoted}'"
        events: list[ProviderEvent] = []
        customers = _call(
            "customer search",
            lambda: list(
                self._client.v1.customers.search(params={"query": query}).auto_paging_iter()
            ),
        )
        for customer in customers:
            sessions = _call(
                "checkout list",
                lambda c=customer.id: list(  # type: ignore[misc]
                    self._client.v1.checkout.sessions.list(
                        params={
                            "customer": c,
                            "expand": ["data.payment_intent", "data.setup_intent"],
                        }
                    ).auto_paging_iter()
                ),
            )
            for session in sessions:
                data = session.to_dict()
                if (data.get("metadata") or {}).get("invoice_id") != invoice_id:
                    continue
                kind = {"complete": EventKind.CHECKOUT_COMPLETED}.get(data.get("status") or "")
                if data.get("status") == "expired":
                    kind = EventKind.CHECKOUT_EXPIRED
                if kind is not None:
                    events.append(
                        ev.checkout_event(
                            f"truth:{session.id}:{kind.value}",
                            ev.timestamp(session.created),
                            data,
                            kind,
                        )
                    )
        intents = _call(
            "payment search",
            lambda: list(
                self._client.v1.payment_intents.search(params={"query": query}).auto_paging_iter()
            ),
        )
        for intent in intents:
            data = intent.to_dict()
            kind = None
            if intent.status == "succeeded":
                kind = EventKind.PAYMENT_SUCCEEDED
            elif data.get("last_payment_error"):
                kind = EventKind.PAYMENT_FAILED
            if kind is not None:
                events.append(
                    ev.payment_intent_event(
                        f"truth:{intent.id}:{kind.value}", ev.timestamp(intent.created), data, kind
                    )
                )
            refunds = _call(
                "refund list",
                lambda i=intent.id: list(  # type: ignore[misc]
                    self._client.v1.refunds.list(params={"payment_intent": i}).auto_paging_iter()
                ),
            )
            for refund in refunds:
                event = ev.refund_event(
                    f"truth:{refund.id}:refunded", ev.timestamp(refund.created), refund.to_dict()
                )
                if event is not None:
                    events.append(event)
        return sorted(events, key=lambda e: (e.occurred_at, e.event_id))

    def undelivered_events(self, since: datetime) -> list[ProviderEvent]:
        listed = _call(
            "event list",
            lambda: list(
                self._client.v1.events.list(
                    params={"delivery_success": False, "created": {"gte": int(since.timestamp())}}
                ).auto_paging_iter()
            ),
        )
        parsed = (self.parse_event(event.to_dict()) for event in listed)
        return sorted(_present(parsed), key=lambda e: (e.occurred_at, e.event_id))

    # --- events ----------------------------------------------------------------------------

    def parse_event(self, payload: Mapping[str, Any]) -> ProviderEvent | None:
        """A Stripe Event's JSON. A completed Checkout Session's webhook names its intent but
        not the card: the session is fetched with the intent expanded (a ``ProviderUnavailable``
        leaves the event for the worker's retry)."""
        event_type = payload.get("type")
        data = payload.get("data")
        obj = data.get("object") if isinstance(data, Mapping) else None
        event_id = payload.get("id")
        if not isinstance(event_type, str) or not isinstance(obj, Mapping):
            return None
        if not isinstance(event_id, str) or not event_id:
            raise ValueError("a Stripe event has an id")
        occurred_at = ev.timestamp(payload.get("created"))
        if event_type in ev.CHECKOUT_KINDS:
            kind = ev.CHECKOUT_KINDS[event_type]
            if kind is EventKind.CHECKOUT_COMPLETED:
                if obj.get("payment_status") == "unpaid":
                    return None  # a delayed method: async_payment_succeeded completes it
                if ev.kept_card(obj) is None:
                    obj = self._expanded_session(obj)
            return ev.checkout_event(event_id, occurred_at, obj, kind)
        if event_type in ev.PAYMENT_INTENT_KINDS:
            return ev.payment_intent_event(
                event_id, occurred_at, obj, ev.PAYMENT_INTENT_KINDS[event_type]
            )
        if event_type in ev.REFUND_TYPES:
            refund = ev.newest_listed_refund(obj) if event_type == "charge.refunded" else obj
            return ev.refund_event(event_id, occurred_at, refund) if refund else None
        return None

    def _expanded_session(self, session: Mapping[str, Any]) -> Mapping[str, Any]:
        session_id = ev.ref(session.get("id"))
        if session_id is None:
            raise ValueError("a Checkout Session has an id")
        fetched = _call(
            "checkout",
            lambda: self._client.v1.checkout.sessions.retrieve(
                session_id, params={"expand": ["payment_intent", "setup_intent"]}
            ),
        )
        return fetched.to_dict()


class _Declined(Exception):
    def __init__(self, outcome: ChargeOutcome) -> None:
        super().__init__(outcome.decline_code)
        self.outcome = outcome


def _present(events: Iterable[ProviderEvent | None]) -> list[ProviderEvent]:
    return [e for e in events if e is not None]
