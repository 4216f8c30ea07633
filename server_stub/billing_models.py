"""Subscription billing's schema (issue #12, docs/billing.md): subscriptions in Stripe's states,
their transitions, invoices with their lines and credit notes, payments, applied events.

Kept apart from :mod:`server_stub.models` (which imports this module at its end, so
``Base.metadata`` holds the whole schema). The plan's prices live on ``plans`` itself and the
entitlement the hot paths read is ``subscriptions`` (both in models.py): billing keeps
``subscriptions`` in step with these tables in the same transaction (services/billing/
entitlement.py). Money is integer minor units with an ISO 4217 currency.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from agent.protocol import SubscriptionState

from .models import WIDENED_MONEY, Base, UTCDateTime, new_id, one_of

SUBSCRIPTION_STATES = tuple(state.value for state in SubscriptionState)
INVOICE_STATUSES = ("draft", "open", "paid", "void", "uncollectible")
LINE_KINDS = ("charge", "proration_charge", "proration_credit")
ACTOR_KINDS = ("user", "staff", "provider", "system")


class BillingSubscription(Base):
    """A user's paid subscription to a plan. ``paid_through`` is the end of what was paid (or
    of the trial): nothing but a refund ever moves it back. The price is the plan's at the time
    of subscribing (a later change of the plan's price is not forced on an existing subscriber).
    ``last_event_at`` is the provider time of the newest event applied: an older one never moves
    the state back."""

    __tablename__ = "billing_subscriptions"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    plan_id: Mapped[str] = mapped_column(ForeignKey("plans.id"))
    state: Mapped[str] = mapped_column(String(20))
    provider: Mapped[str] = mapped_column(String(16))
    price_minor: Mapped[int] = mapped_column(WIDENED_MONEY)
    currency: Mapped[str] = mapped_column(String(3))
    interval: Mapped[str] = mapped_column(String(8))
    #: The kept card (Stripe "pm|cus", CloudPayments token) that renewals charge.
    payment_method_ref: Mapped[str | None] = mapped_column(String(255), nullable=True)
    current_period_start: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    current_period_end: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    paid_through: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    trial_end: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    #: When the renewal (or the next dunning retry) is due; ``None``: nothing to charge.
    next_charge_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    cancel_at_period_end: Mapped[bool] = mapped_column(Boolean, default=False)
    canceled_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    paused_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    #: ``past_due`` keeps access until here (the paid period's end plus the grace).
    grace_ends_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    last_event_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    #: A plan change at period end (changes.py): the renewal at ``current_period_end`` switches
    #: to this plan. No foreign key: plans are retired, never deleted.
    scheduled_plan_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (
        CheckConstraint(one_of("state", SUBSCRIPTION_STATES), name="state_known"),
        CheckConstraint("price_minor >= 0", name="price_nonnegative"),
        CheckConstraint("\"interval\" IN ('month', 'year')", name="interval_known"),
        Index("ix_billing_subscriptions_user", "user_id", "created_at"),
        Index("ix_billing_subscriptions_state", "state"),
    )


class BillingTransition(Base):
    """One change of a subscription's state: from, to, when, who or what, and why."""

    __tablename__ = "billing_transitions"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    subscription_id: Mapped[str] = mapped_column(
        ForeignKey("billing_subscriptions.id", ondelete="CASCADE")
    )
    #: ``None`` for the creation.
    from_state: Mapped[str | None] = mapped_column(String(20), nullable=True)
    to_state: Mapped[str] = mapped_column(String(20))
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    actor_kind: Mapped[str] = mapped_column(String(16))
    #: The user's or staff member's id, the provider's event id, or the system job's name.
    actor_id: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str] = mapped_column(String(300))

    __table_args__ = (
        CheckConstraint(one_of("actor_kind", ACTOR_KINDS), name="actor_kind_known"),
        Index("ix_billing_transitions_subscription", "subscription_id", "seq"),
    )


class BillingInvoice(Base):
    """What the customer owes for a period. ``total_minor`` is the sum of the lines (a credit
    line is negative); ``amount_due_minor`` = max(total − credit applied, 0): what a provider
    is asked to charge. An excess of credits becomes a :class:`BillingCreditNote`."""

    __tablename__ = "billing_invoices"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    subscription_id: Mapped[str] = mapped_column(
        ForeignKey("billing_subscriptions.id", ondelete="CASCADE")
    )
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(16))
    currency: Mapped[str] = mapped_column(String(3))
    total_minor: Mapped[int] = mapped_column(BigInteger)
    credit_applied_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    amount_due_minor: Mapped[int] = mapped_column(BigInteger)
    amount_paid_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    #: The period the invoice pays for (its charge line's).
    period_start: Mapped[datetime] = mapped_column(UTCDateTime())
    period_end: Mapped[datetime] = mapped_column(UTCDateTime())
    #: The provider's checkout (first invoice only) and where the customer pays it.
    checkout_ref: Mapped[str | None] = mapped_column(String(255), nullable=True)
    checkout_url: Mapped[str | None] = mapped_column(String(2048), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    voided_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    __table_args__ = (
        CheckConstraint(one_of("status", INVOICE_STATUSES), name="status_known"),
        CheckConstraint(
            "amount_due_minor >= 0 AND amount_paid_minor >= 0 AND credit_applied_minor >= 0",
            name="amounts_nonnegative",
        ),
        Index("ix_billing_invoices_subscription", "subscription_id", "created_at"),
        Index("ix_billing_invoices_user", "user_id", "created_at"),
    )


class BillingInvoiceLine(Base):
    """One line the customer sees: a charge for a period, or a proration (a charge for the
    rest of a period on the new plan, a credit, negative, for the unused rest of the old)."""

    __tablename__ = "billing_invoice_lines"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    invoice_id: Mapped[str] = mapped_column(ForeignKey("billing_invoices.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(20))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    plan_id: Mapped[str | None] = mapped_column(ForeignKey("plans.id"), nullable=True)
    period_start: Mapped[datetime] = mapped_column(UTCDateTime())
    period_end: Mapped[datetime] = mapped_column(UTCDateTime())
    description: Mapped[str] = mapped_column(String(300))

    __table_args__ = (
        CheckConstraint(one_of("kind", LINE_KINDS), name="kind_known"),
        CheckConstraint(
            "(kind = 'proration_credit' AND amount_minor <= 0)"
            " OR (kind <> 'proration_credit' AND amount_minor >= 0)",
            name="sign_by_kind",
        ),
        CheckConstraint("period_end >= period_start", name="period_ordered"),
        Index("ix_billing_invoice_lines_invoice", "invoice_id"),
    )


class BillingCreditNote(Base):
    """A credit owed to the customer (an immediate downgrade's unused rest beyond what the
    invoice charges, or a goodwill credit): applied to the next invoice (``applied_invoice_id``)
    or refunded. ``invoice_id`` is the invoice that issued it."""

    __tablename__ = "billing_credit_notes"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    subscription_id: Mapped[str] = mapped_column(
        ForeignKey("billing_subscriptions.id", ondelete="CASCADE")
    )
    invoice_id: Mapped[str | None] = mapped_column(
        ForeignKey("billing_invoices.id", ondelete="SET NULL"), nullable=True
    )
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    reason: Mapped[str] = mapped_column(String(300))
    status: Mapped[str] = mapped_column(String(16), default="issued")
    applied_invoice_id: Mapped[str | None] = mapped_column(
        ForeignKey("billing_invoices.id", ondelete="SET NULL"), nullable=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (
        CheckConstraint("amount_minor > 0", name="amount_positive"),
        CheckConstraint("status IN ('issued', 'applied', 'refunded', 'void')", name="status_known"),
        Index("ix_billing_credit_notes_subscription", "subscription_id"),
    )


class BillingPayment(Base):
    """One payment attempt as a provider reported it. ``(provider, payment_ref)`` is unique:
    the same payment reported twice (webhook and reconciler) is recorded once."""

    __tablename__ = "billing_payments"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    provider: Mapped[str] = mapped_column(String(16))
    payment_ref: Mapped[str | None] = mapped_column(String(255), nullable=True)
    subscription_id: Mapped[str | None] = mapped_column(
        ForeignKey("billing_subscriptions.id", ondelete="SET NULL"), nullable=True
    )
    invoice_id: Mapped[str | None] = mapped_column(
        ForeignKey("billing_invoices.id", ondelete="SET NULL"), nullable=True
    )
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(16))
    decline_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    hard_decline: Mapped[bool] = mapped_column(Boolean, default=False)
    refunded_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (
        UniqueConstraint("provider", "payment_ref", name="uq_billing_payments_provider_ref"),
        CheckConstraint("status IN ('succeeded', 'failed')", name="status_known"),
        CheckConstraint(
            "amount_minor >= 0 AND refunded_minor >= 0 AND refunded_minor <= amount_minor",
            name="refund_within_amount",
        ),
        Index("ix_billing_payments_invoice", "invoice_id"),
        Index("ix_billing_payments_subscription", "subscription_id"),
    )


class BillingAppliedEvent(Base):
    """Each provider event billing was asked to apply and what came of it (``applied``,
    ``duplicate``, ``stale``: older than the subscription's newest, ``ignored``): applying an
    event again changes nothing, and an ignored regression is on record."""

    __tablename__ = "billing_applied_events"

    provider: Mapped[str] = mapped_column(String(16), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    subscription_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime())
    applied_at: Mapped[datetime] = mapped_column(UTCDateTime())
    outcome: Mapped[str] = mapped_column(String(16))
    note: Mapped[str | None] = mapped_column(String(300), nullable=True)

    __table_args__ = (Index("ix_billing_applied_events_applied", "applied_at"),)
