"""The customer's renewal now (``POST /subscriptions/renew``, seed 001's "manual renewal, if
needed"; docs/billing.md, "The customer's endpoints").

Renew means: pay the open renewal invoice of a ``past_due`` or ``unpaid`` subscription now. The
kept card is charged exactly as a dunning retry charges it (renewals.py: the same attempt
numbering and idempotency key, the same application of the answer), so a success makes the
subscription ``active`` with ``paid_through`` at the invoice's period end, as a renewal does, and
a failure counts as one of the dunning attempts. When the card is declined (or no card is kept),
the answer is the provider's checkout for that invoice, so the customer pays with another card.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ...billing_models import BillingSubscription
from ...db import transaction
from ...errors import ServiceUnavailable, ValidationFailed
from ..context import ServiceContext
from .common import SubscriptionView, require_subscription, subscription_view
from .contract import ProviderAdapter, ProviderName, ProviderUnavailable, SubscriptionState
from .renewals import Attempt, Renewals, attempt_of, open_renewal_invoice
from .subscriptions import ProviderNotConfigured, Subscriptions

S = SubscriptionState
#: The states whose subscription owes a renewal it may pay now.
_RENEWABLE = frozenset({S.PAST_DUE, S.UNPAID})


class NothingDue(ValidationFailed):
    """The subscription owes no renewal (active, trialing, paused, ended): 422
    ``validation_error``, as when its state refuses a move."""

    def __init__(self, state: SubscriptionState) -> None:
        super().__init__(
            f"nothing is due: the subscription is {state.value}", state=state.value, due=False
        )


@dataclass(frozen=True)
class ManualRenewal:
    paid: bool
    subscription: SubscriptionView
    invoice_id: str
    amount_minor: int
    currency: str
    checkout_url: str | None = None
    decline_code: str | None = None


@dataclass(frozen=True)
class _Due:
    """The renewal invoice to pay, as read under the subscription's lock."""

    subscription_id: str
    invoice_id: str
    amount_minor: int
    currency: str


class ManualRenewals:
    def __init__(
        self,
        ctx: ServiceContext,
        adapters: Mapping[ProviderName, ProviderAdapter],
        renewals: Renewals,
        subscriptions: Subscriptions,
    ) -> None:
        self._ctx = ctx
        self._adapters = adapters
        self._renewals = renewals
        self._subscriptions = subscriptions

    def renew(self, user_id: str) -> ManualRenewal:
        """Pay the user's open renewal invoice now: on the kept card, else at a checkout.
        Raises ``NotFound`` (no subscription), :class:`NothingDue`, ``ServiceUnavailable``."""
        now = self._ctx.clock.now()
        with transaction(self._ctx.write) as session:
            sub = require_subscription(session, user_id, lock=True)
            state = S(sub.state)
            invoice = open_renewal_invoice(session, sub) if state in _RENEWABLE else None
            if invoice is None:
                raise NothingDue(state)
            provider = ProviderName(sub.provider)
            if provider not in self._adapters:
                raise ProviderNotConfigured(f"payments through {provider.value} are not configured")
            attempt: Attempt | None = (
                attempt_of(session, sub, invoice) if sub.payment_method_ref else None
            )
            due = _Due(sub.id, invoice.id, invoice.amount_due_minor, invoice.currency)
        decline: str | None = None
        # Outside any transaction: a provider's round trip must not hold the subscription's lock.
        try:
            if attempt is not None:
                charged = self._renewals.charge(attempt, now)
                if charged.paid:
                    return self._answer(due, paid=True)
                decline = charged.decline_code
            # A new key after each failed attempt: a checkout per decline, the same one for a
            # repeated request that found nothing new.
            failures = attempt.attempt + 1 if attempt is not None else 0
            url = self._subscriptions.checkout_open_invoice(
                due.invoice_id, f"renew-checkout-{due.invoice_id}-{failures}"
            )
        except ProviderUnavailable as exc:
            raise ServiceUnavailable(
                f"{provider.value} is unavailable; try again", headers={"Retry-After": "30"}
            ) from exc
        return self._answer(due, paid=False, url=url, decline=decline)

    def _answer(
        self, due: _Due, *, paid: bool, url: str | None = None, decline: str | None = None
    ) -> ManualRenewal:
        with transaction(self._ctx.read) as session:
            sub = session.get(BillingSubscription, due.subscription_id)
            assert sub is not None
            view = subscription_view(self._ctx, session, sub)
        return ManualRenewal(
            paid, view, due.invoice_id, due.amount_minor, due.currency, url, decline
        )
