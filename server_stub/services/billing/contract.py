"""Billing's shared vocabulary: subscription states, provider events and the adapter interface.

Our server is the subscription engine (the state machine, renewals, dunning, proration); a
payment provider (Stripe, CloudPayments) is a payment processor behind one interface: it opens a
checkout for the first payment (and keeps the card for later), charges a kept card for renewals
and prorations, refunds, and tells its truth about a payment when asked (the reconciler). What a
provider says arrives as a webhook, is stored raw in the inbox, and is read into one normalized
:class:`ProviderEvent` by that provider's adapter before billing applies it.

Every amount is integer minor units with an ISO 4217 currency (DESIGN.md, "Money"); every time is
an aware UTC datetime.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

# The states, intervals and providers are wire values: their one home is agent.protocol; billing
# keeps importing them from here, its vocabulary.
from agent.protocol import Interval as Interval
from agent.protocol import ProviderName as ProviderName
from agent.protocol import SubscriptionState as SubscriptionState


class EventKind(StrEnum):
    """What a provider's event means to billing, whatever the provider called it."""

    #: The first payment of a checkout succeeded (or a trial's card was kept): the card is kept
    #: (``payment_method_ref``) and the subscription starts.
    CHECKOUT_COMPLETED = "checkout_completed"
    #: A charge (renewal, proration, dunning retry) succeeded: what it paid for is paid.
    PAYMENT_SUCCEEDED = "payment_succeeded"
    #: A charge failed; ``decline_code`` and ``hard_decline`` say whether to retry.
    PAYMENT_FAILED = "payment_failed"
    #: Money went back (full or partial, ``amount_minor``).
    REFUNDED = "refunded"
    #: The checkout was abandoned or expired before any payment.
    CHECKOUT_EXPIRED = "checkout_expired"
    #: The customer or the provider canceled the recurring agreement (CloudPayments' Cancel).
    AGREEMENT_CANCELED = "agreement_canceled"


@dataclass(frozen=True)
class ProviderEvent:
    """One provider event, normalized. ``event_id`` is the provider's own (the inbox dedupes by
    ``(provider, event_id)``); ``occurred_at`` is the provider's event time (events apply in that
    order and never move a subscription back)."""

    provider: ProviderName
    event_id: str
    kind: EventKind
    occurred_at: datetime
    #: Our invoice's id, as we passed it to the provider (Stripe metadata ``invoice_id``,
    #: CloudPayments ``InvoiceId``): how an event finds what it is about.
    invoice_id: str | None = None
    #: Our subscription's id (Stripe metadata ``subscription_id``, CloudPayments ``AccountId``).
    subscription_id: str | None = None
    #: The provider's id of the payment (Stripe PaymentIntent, CloudPayments TransactionId);
    #: applying the same payment twice changes nothing.
    payment_ref: str | None = None
    #: A kept card to charge later (Stripe PaymentMethod + Customer "pm|cus", CloudPayments
    #: Token), on CHECKOUT_COMPLETED.
    payment_method_ref: str | None = None
    amount_minor: int | None = None
    currency: str | None = None
    decline_code: str | None = None
    #: A decline that must never be retried (stolen card, do-not-honor classes).
    hard_decline: bool = False
    #: On REFUNDED: the provider's id of this refund (Stripe ``re_…``, CloudPayments' refund
    #: TransactionId), the ``RefundOutcome.refund_ref`` of an operator's refund. A payment may be
    #: refunded in parts: each part is its own refund, and applying one twice changes nothing.
    refund_ref: str | None = None


@dataclass(frozen=True)
class Checkout:
    """Where the customer pays the first invoice (opened in the browser)."""

    url: str
    #: The provider's id of the checkout (Stripe Checkout Session, CloudPayments order).
    checkout_ref: str
    expires_at: datetime | None = None


@dataclass(frozen=True)
class ChargeOutcome:
    """A charge of a kept card, as the provider answered it synchronously."""

    succeeded: bool
    payment_ref: str | None = None
    decline_code: str | None = None
    hard_decline: bool = False


@dataclass(frozen=True)
class RefundOutcome:
    refund_ref: str
    amount_minor: int
    succeeded: bool


class ProviderUnavailable(Exception):
    """The provider could not be reached or answered 5xx: try again later (nothing changed)."""


class ProviderRefused(Exception):
    """The provider refused the request itself (bad parameters, unknown payment)."""


class ProviderAdapter(Protocol):
    """One payment provider. Blocking (called from services, off the event loop). Every call
    that moves money takes our idempotency key and passes it on (Stripe's ``Idempotency-Key``,
    CloudPayments' ``X-Request-ID``), so a retried call never charges twice."""

    name: ProviderName

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
        """Open a checkout that charges ``amount_minor`` (0 for a trial: the card is kept only)
        and keeps the card for later charges."""
        ...

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
        """Charge a kept card (renewal, proration, dunning retry)."""
        ...

    def refund(
        self, *, payment_ref: str, amount_minor: int, currency: str, idempotency_key: str
    ) -> RefundOutcome:
        """Refund ``amount_minor`` of a payment (full or partial)."""
        ...

    def payment_truth(self, invoice_id: str) -> list[ProviderEvent]:
        """The provider's truth about our invoice, as the events billing would have heard (the
        reconciler applies what a lost webhook left out; applying is idempotent by
        ``payment_ref``). An empty list: the provider knows nothing of it."""
        ...

    def undelivered_events(self, since: datetime) -> list[ProviderEvent]:
        """Events the provider failed to deliver since ``since`` (Stripe's
        ``delivery_success=false``); a provider without such a list returns ``[]``."""
        ...

    def parse_event(self, payload: Mapping[str, Any]) -> ProviderEvent | None:
        """A verified webhook's JSON body read into an event; ``None`` for an event type billing
        does not act on (stored, acknowledged and ignored)."""
        ...
