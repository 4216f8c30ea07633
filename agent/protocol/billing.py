"""Subscription billing on the wire (issue #12, docs/billing.md): the customer's plans,
subscription, plan changes, invoices and payments, shared by the server's ``/plans`` and
``/subscriptions/...`` routes and the agent's billing client.

Every amount is integer minor units of an ISO 4217 ``currency``; every time is an aware UTC
datetime. The operator's (staff) models stay in the server.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

#: A plan's name: what the CLI, ``/plans`` and ``/subscriptions/create`` call it.
PLAN_NAME_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
#: An ISO 4217 currency code.
CURRENCY_PATTERN: Final = r"^[A-Z]{3}$"
#: ``GET /subscriptions/invoices``: the page size asked for when none is, and the most allowed.
INVOICES_PAGE_DEFAULT: Final = 20
INVOICES_PAGE_MAX: Final = 100

PlanName = Annotated[str, StringConstraints(pattern=PLAN_NAME_PATTERN)]
Currency = Annotated[str, StringConstraints(pattern=CURRENCY_PATTERN)]


class SubscriptionState(StrEnum):
    """Stripe's subscription states (docs/billing.md draws the machine)."""

    INCOMPLETE = "incomplete"
    INCOMPLETE_EXPIRED = "incomplete_expired"
    TRIALING = "trialing"
    ACTIVE = "active"
    PAST_DUE = "past_due"
    UNPAID = "unpaid"
    CANCELED = "canceled"
    PAUSED = "paused"


class Interval(StrEnum):
    """How often a plan bills."""

    MONTH = "month"
    YEAR = "year"


class ProviderName(StrEnum):
    """The payment providers a subscription can be paid through."""

    STRIPE = "stripe"
    CLOUDPAYMENTS = "cloudpayments"
    #: An app store (issue #13): it sells and renews by itself; billing never charges through
    #: it, the store purchases' service verifies what it sold (docs/points.md).
    RUSTORE = "rustore"


class ChangeWhen(StrEnum):
    """When a plan change takes effect: now (prorated) or at the period's end (scheduled)."""

    NOW = "now"
    PERIOD_END = "period_end"


class CancelWhen(StrEnum):
    """When a cancel takes effect: at the period's end (what was paid stays) or now."""

    PERIOD_END = "period_end"
    NOW = "now"


class ChangeDirection(StrEnum):
    """What the change is, from the plans' ranks (stated, never inferred from prices)."""

    UPGRADE = "upgrade"
    DOWNGRADE = "downgrade"
    #: Month ↔ year: the new plan's period starts at the change.
    INTERVAL_CHANGE = "interval_change"


InvoiceStatus = Literal["draft", "open", "paid", "void", "uncollectible"]
InvoiceLineKind = Literal["charge", "proration_charge", "proration_credit"]
CreditNoteStatus = Literal["issued", "applied", "refunded", "void"]
PaymentStatus = Literal["succeeded", "failed"]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PlanOut(BaseModel):
    name: str
    monthly_quota: int
    max_devices: int
    features: list[str]
    price_minor: int = Field(description="the price of one interval, integer minor units")
    currency: str
    interval: Interval
    trial_days: int
    rank: int = Field(description="the tier: a change to a higher rank is an upgrade")
    topup_messages_per_point: int = Field(
        0, description="extra messages one point buys (POST /usage/topup); 0: none are sold"
    )


class PlanList(BaseModel):
    plans: list[PlanOut]


class SubscriptionOut(BaseModel):
    id: str
    plan: str
    state: SubscriptionState
    provider: ProviderName
    price_minor: int
    currency: str
    interval: Interval
    current_period_start: datetime | None
    current_period_end: datetime | None
    paid_through: datetime | None = Field(description="the end of what was paid (or the trial)")
    trial_end: datetime | None
    cancel_at_period_end: bool
    canceled_at: datetime | None
    paused_at: datetime | None
    grace_ends_at: datetime | None
    entitled_until: datetime | None = Field(
        description="the license is in force until then because of this subscription"
    )
    created_at: datetime
    pending_credit_minor: int = Field(
        0, description="credit notes not yet used: the next invoice takes them off"
    )
    scheduled_plan: str | None = Field(None, description="the plan from the period's end")
    scheduled_change_at: datetime | None = None


class SubscriptionStatus(BaseModel):
    #: ``null``: the account never subscribed.
    subscription: SubscriptionOut | None


class SubscriptionCreate(_Request):
    plan: PlanName
    provider: ProviderName


class SubscriptionCreated(BaseModel):
    subscription: SubscriptionOut
    invoice_id: str
    checkout_url: str = Field(description="open in the browser to pay the first invoice")


class SubscriptionCancel(_Request):
    when: CancelWhen = CancelWhen.PERIOD_END


class SubscriptionRenewed(BaseModel):
    """``POST /subscriptions/renew``: the open renewal invoice paid now, or where to pay it."""

    paid: bool = Field(
        description="true: the kept card paid the invoice and the subscription is active; "
        "false: pay it at `checkout_url`"
    )
    subscription: SubscriptionOut
    invoice_id: str = Field(description="the renewal invoice that was due")
    amount_minor: int = Field(description="what the invoice asked for, integer minor units")
    currency: str
    checkout_url: str | None = Field(
        None, description="when not paid: open in the browser to pay with another card"
    )
    decline_code: str | None = Field(
        None, description="when the kept card was declined: the provider's reason"
    )


class InvoiceLineOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    kind: InvoiceLineKind
    amount_minor: int = Field(description="a credit is negative")
    currency: str
    description: str
    period_start: datetime
    period_end: datetime


class InvoiceOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    status: InvoiceStatus
    currency: str
    total_minor: int
    amount_due_minor: int
    amount_paid_minor: int
    period_start: datetime
    period_end: datetime
    created_at: datetime
    paid_at: datetime | None
    lines: list[InvoiceLineOut]


class CreditNoteOut(BaseModel):
    """A credit owed to the customer; the next invoice uses it (``applied``)."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    amount_minor: int = Field(description="positive: what is owed to the customer")
    currency: str
    reason: str
    status: CreditNoteStatus
    invoice_id: str | None = Field(description="the invoice that issued it")
    applied_invoice_id: str | None = Field(description="the invoice it was taken off")
    created_at: datetime


class CustomerPaymentOut(BaseModel):
    """One charge of the customer's card (the first payment, a renewal, a proration)."""

    id: str
    invoice_id: str | None
    provider: ProviderName
    amount_minor: int
    refunded_minor: int = Field(description="how much of it went back, integer minor units")
    currency: str
    status: PaymentStatus
    decline_code: str | None = Field(description="why a failed charge was declined")
    created_at: datetime = Field(description="when the charge was made (the provider's time)")


class CustomerInvoiceOut(InvoiceOut):
    """An invoice as its customer sees it: with what paid it and the credits it touched."""

    credit_applied_minor: int = Field(description="credit notes taken off the total")
    credit_notes: list[CreditNoteOut] = Field(
        description="credit notes this invoice issued or used"
    )
    payments: list[CustomerPaymentOut]


class CustomerInvoiceList(BaseModel):
    """``GET /subscriptions/invoices``: one page, newest first."""

    invoices: list[CustomerInvoiceOut]
    next_before: str | None = Field(
        description="pass as `before` for the next (older) page; null: this is the last page"
    )


class PlanChangeRequest(_Request):
    plan: PlanName
    when: ChangeWhen = ChangeWhen.NOW


class ProrationLineOut(BaseModel):
    kind: Literal["proration_charge", "proration_credit"]
    amount_minor: int = Field(description="a credit is negative")
    period_start: datetime
    period_end: datetime
    seconds: int
    description_key: str


class PlanChangeOut(BaseModel):
    plan: str
    when: ChangeWhen
    direction: ChangeDirection = Field(description="from the plans' ranks, never from prices")
    effective_at: datetime
    new_price_minor: int = Field(description="the new plan's price of one interval")
    currency: str
    interval: Interval
    credit_minor: int = Field(description="the unused part of what was paid (now only)")
    charge_minor: int
    net_minor: int = Field(description="positive: charged now; negative: a credit note")
    lines: list[ProrationLineOut]
    period_end: datetime | None = Field(description="where the new plan's current period ends")
    invoice_id: str | None = None


class PlanChangeDone(BaseModel):
    change: PlanChangeOut
    subscription: SubscriptionOut
