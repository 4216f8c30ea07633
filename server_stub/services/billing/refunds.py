"""The operator's refunds and the payments' ledger (docs/billing.md, "Refunds").

A refund goes through the payment's own provider, with an idempotency key derived from our
refund's id; what the provider refunded is booked on the payment (``refunded_minor``) and its
``refund_ref`` is marked (events.REFUND_MARK), so the provider's later REFUNDED webhook of the
same refund changes nothing. The provider is called outside any transaction (no row lock is held
across the network): the remaining amount is checked before, and again when booking.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from ...billing_models import BillingPayment, BillingSubscription
from ...db import transaction
from ...errors import NotFound, ServiceUnavailable, ValidationFailed
from ..audit import record
from ..context import ServiceContext
from .common import Actor, ActorKind, settle
from .contract import (
    EventKind,
    ProviderAdapter,
    ProviderEvent,
    ProviderName,
    ProviderRefused,
    ProviderUnavailable,
)
from .events import PERIOD_REFUNDED, BillingEvents, mark_refund, refund_seen


@dataclass(frozen=True)
class PaymentView:
    id: str
    provider: str
    payment_ref: str | None
    subscription_id: str | None
    invoice_id: str | None
    amount_minor: int
    refunded_minor: int
    currency: str
    status: str
    occurred_at: datetime


@dataclass(frozen=True)
class RefundResult:
    payment: PaymentView
    refund_ref: str
    amount_minor: int
    #: ``False``: the provider accepted it but the money is not back yet (nothing booked; its
    #: webhook books it when it succeeds).
    succeeded: bool
    #: The subscription's entitlement ended (a full refund of the current period).
    entitlement_ended: bool


def _view(p: BillingPayment) -> PaymentView:
    return PaymentView(
        id=p.id,
        provider=p.provider,
        payment_ref=p.payment_ref,
        subscription_id=p.subscription_id,
        invoice_id=p.invoice_id,
        amount_minor=p.amount_minor,
        refunded_minor=p.refunded_minor,
        currency=p.currency,
        status=p.status,
        occurred_at=p.occurred_at,
    )


def payment_object(payment_id: str) -> str:
    """The audit log's object path of a payment."""
    return f"billing/payments/{payment_id}"


class Refunds:
    def __init__(
        self,
        ctx: ServiceContext,
        adapters: Mapping[ProviderName, ProviderAdapter],
        events: BillingEvents,
    ) -> None:
        self._ctx = ctx
        self._adapters = adapters
        self._events = events

    def payments(
        self, *, user_id: str | None = None, subscription_id: str | None = None
    ) -> list[PaymentView]:
        """A user's or a subscription's payments, newest first, with what was refunded."""
        query = select(BillingPayment).order_by(
            BillingPayment.occurred_at.desc(), BillingPayment.id
        )
        if subscription_id is not None:
            query = query.where(BillingPayment.subscription_id == subscription_id)
        if user_id is not None:
            query = query.join(
                BillingSubscription, BillingSubscription.id == BillingPayment.subscription_id
            ).where(BillingSubscription.user_id == user_id)
        with transaction(self._ctx.read) as session:
            return [_view(p) for p in session.scalars(query)]

    def refund(self, actor: str, payment_id: str, amount_minor: int | None) -> RefundResult:
        """Refund ``amount_minor`` (all that remains when ``None``) of a succeeded payment."""
        with transaction(self._ctx.read) as session:
            payment = session.get(BillingPayment, payment_id)
            if payment is None:
                raise NotFound(f"no payment {payment_id!r}")
            amount = self._check(payment, amount_minor)
            provider, payment_ref, currency = (
                payment.provider,
                payment.payment_ref,
                payment.currency,
            )
        adapter = self._adapters.get(ProviderName(provider))
        if adapter is None or payment_ref is None:
            raise ValidationFailed(f"{provider} is not configured on this server")
        # Ours, fresh for each refund: a retry of the same request is the Idempotency-Key's job.
        refund_id = str(uuid.uuid4())
        try:
            outcome = adapter.refund(
                payment_ref=payment_ref,
                amount_minor=amount,
                currency=currency,
                idempotency_key=f"refund-{refund_id}",
            )
        except ProviderUnavailable as exc:
            raise ServiceUnavailable(
                f"{provider} is unavailable; nothing was refunded, try again",
                headers={"Retry-After": "30"},
            ) from exc
        except ProviderRefused as exc:
            raise ValidationFailed(f"{provider} refused the refund: {exc}") from exc
        return self._book(
            actor,
            payment_id,
            refund_id,
            amount,
            outcome.refund_ref,
            outcome.amount_minor,
            outcome.succeeded,
        )

    @staticmethod
    def _check(payment: BillingPayment, amount_minor: int | None) -> int:
        if payment.status != "succeeded":
            raise ValidationFailed("only a succeeded payment can be refunded")
        left = payment.amount_minor - payment.refunded_minor
        amount = left if amount_minor is None else amount_minor
        if left <= 0:
            raise ValidationFailed("this payment is refunded in full already")
        if amount <= 0 or amount > left:
            raise ValidationFailed(
                f"a refund must be between 1 and the {left} {payment.currency} minor units "
                "not yet refunded"
            )
        return amount

    def _book(
        self,
        actor: str,
        payment_id: str,
        refund_id: str,
        asked: int,
        refund_ref: str,
        refunded: int,
        succeeded: bool,
    ) -> RefundResult:
        now = self._ctx.clock.now()
        ended = False
        with transaction(self._ctx.write) as session:
            payment = session.scalar(
                select(BillingPayment).where(BillingPayment.id == payment_id).with_for_update()
            )
            assert payment is not None  # a payment is never deleted while it has a subscription
            sub = (
                session.scalar(
                    select(BillingSubscription)
                    .where(BillingSubscription.id == payment.subscription_id)
                    .with_for_update()
                )
                if payment.subscription_id
                else None
            )
            provider = payment.provider
            details = {
                "refund_id": refund_id,
                "refund_ref": refund_ref,
                "amount_minor": refunded,
                "asked_minor": asked,
                "currency": payment.currency,
                "succeeded": succeeded,
            }
            # A webhook of this refund may have been applied while the provider answered.
            if succeeded and not refund_seen(session, provider, refund_ref):
                event = ProviderEvent(
                    provider=ProviderName(provider),
                    event_id=f"operator:{refund_id}",
                    kind=EventKind.REFUNDED,
                    occurred_at=now,
                    payment_ref=payment.payment_ref,
                    amount_minor=refunded,
                    refund_ref=refund_ref,
                )
                mark_refund(session, event, payment.subscription_id, now)
                if sub is None:
                    payment.refunded_minor = min(
                        payment.amount_minor, payment.refunded_minor + refunded
                    )
                else:
                    note = self._events.book_refund(
                        session, sub, payment, refunded, at=now, actor=Actor(ActorKind.STAFF, actor)
                    )
                    ended = note == PERIOD_REFUNDED
                    settle(self._ctx, session, sub)
            record(
                session, now, actor, "billing.payment.refund", payment_object(payment_id), details
            )
            session.flush()
            view = _view(payment)
        return RefundResult(view, refund_ref, refunded, succeeded, ended)
