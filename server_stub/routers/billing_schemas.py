"""Billing's staff models and the converters of both sides' models (the customer's wire models
are agent.protocol's).

The edge bounds the shapes and sizes; the billing service owns the rules (a retired plan is not
offered, a state refuses a move) and answers them as problem details.
"""

from __future__ import annotations

from dataclasses import asdict, fields
from datetime import datetime
from typing import Annotated, Literal, Self

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema

from agent.protocol import (
    CreditNoteOut,
    Currency,
    CustomerInvoiceList,
    CustomerInvoiceOut,
    CustomerPaymentOut,
    Interval,
    InvoiceLineOut,
    InvoiceOut,
    PlanChangeOut,
    PlanName,
    PlanOut,
    ProrationLineOut,
    SubscriptionOut,
    SubscriptionRenewed,
    SubscriptionState,
)

from ..billing_models import BillingInvoice, BillingInvoiceLine
from ..models import Plan
from ..services.billing.changes import ChangePlan
from ..services.billing.common import SubscriptionView
from ..services.billing.manual_renewal import ManualRenewal
from ..services.billing.plans import (
    MAX_MONTHLY_QUOTA,
    MAX_PRICE_MINOR,
    MAX_TOPUP_RATE,
    MAX_TRIAL_DAYS,
)
from ..services.billing.statements import StatementPage
from ..services.billing.subscriptions import SubscriptionHistory
from .wire_numbers import json_integer

Feature = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]
Features = Annotated[list[Feature], Field(max_length=64)]
PriceMinor = Annotated[int, Field(ge=0, le=MAX_PRICE_MINOR), BeforeValidator(json_integer)]
Quota = Annotated[int, Field(ge=0, le=MAX_MONTHLY_QUOTA), BeforeValidator(json_integer)]
Devices = Annotated[int, Field(ge=1, le=10_000), BeforeValidator(json_integer)]
TrialDays = Annotated[int, Field(ge=0, le=MAX_TRIAL_DAYS), BeforeValidator(json_integer)]
Rank = Annotated[int, Field(ge=-1_000_000, le=1_000_000), BeforeValidator(json_integer)]
TopupRate = Annotated[int, Field(ge=0, le=MAX_TOPUP_RATE), BeforeValidator(json_integer)]
NoNull = SkipJsonSchema[None]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StaffPlanOut(PlanOut):
    retired_at: datetime | None
    created_at: datetime


class StaffPlanList(BaseModel):
    plans: list[StaffPlanOut]


class PlanCreate(_Request):
    name: PlanName
    monthly_quota: Quota
    max_devices: Devices = 1
    features: Features = Field(default_factory=list)
    price_minor: PriceMinor = 0
    currency: Currency = "RUB"
    interval: Interval = Interval.MONTH
    trial_days: TrialDays = 0
    rank: Rank = 0
    topup_messages_per_point: TopupRate = 0


class PatchRequest(_Request):
    """A PATCH body: a field left out is kept, and none may be null (``NoNull`` fields)."""

    @model_validator(mode="after")
    def _no_nulls(self) -> Self:
        nulls = sorted(name for name in self.model_fields_set if getattr(self, name) is None)
        if nulls:
            raise ValueError(f"may be left out but not null: {', '.join(nulls)}")
        return self


class PlanPatch(PatchRequest):
    """What to change; a field left out is kept (none may be null)."""

    monthly_quota: Quota | NoNull = None
    max_devices: Devices | NoNull = None
    features: Features | NoNull = None
    price_minor: PriceMinor | NoNull = None
    currency: Currency | NoNull = None
    interval: Interval | NoNull = None
    trial_days: TrialDays | NoNull = None
    rank: Rank | NoNull = None
    topup_messages_per_point: TopupRate | NoNull = None


class TransitionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    #: ``null`` for the creation.
    from_state: SubscriptionState | None
    to_state: SubscriptionState
    at: datetime
    actor_kind: Literal["user", "staff", "provider", "system"]
    actor_id: str
    reason: str


class SubscriptionHistoryOut(BaseModel):
    subscription: SubscriptionOut
    user_id: str
    transitions: list[TransitionOut]
    invoices: list[InvoiceOut]


def plan_out(plan: Plan) -> PlanOut:
    return PlanOut.model_validate(plan, from_attributes=True)


def staff_plan_out(plan: Plan) -> StaffPlanOut:
    return StaffPlanOut.model_validate(plan, from_attributes=True)


def subscription_out(view: SubscriptionView) -> SubscriptionOut:
    return SubscriptionOut.model_validate(asdict(view))


def _invoice_out(invoice: BillingInvoice, lines: list[BillingInvoiceLine]) -> InvoiceOut:
    fields = {name: getattr(invoice, name) for name in InvoiceOut.model_fields if name != "lines"}
    return InvoiceOut(**fields, lines=[InvoiceLineOut.model_validate(line) for line in lines])


def history_out(history: SubscriptionHistory) -> SubscriptionHistoryOut:
    return SubscriptionHistoryOut(
        subscription=subscription_out(history.subscription),
        user_id=history.user_id,
        transitions=[TransitionOut.model_validate(t) for t in history.transitions],
        invoices=[_invoice_out(invoice, lines) for invoice, lines in history.invoices],
    )


def plan_change_out(change: ChangePlan) -> PlanChangeOut:
    money = change.proration
    return PlanChangeOut(
        plan=change.plan,
        when=change.when,
        direction=change.direction,
        effective_at=change.effective_at,
        new_price_minor=change.new_price_minor,
        currency=change.currency,
        interval=change.interval,
        credit_minor=money.credit_minor if money else 0,
        charge_minor=money.charge_minor if money else 0,
        net_minor=money.net_minor if money else 0,
        lines=[
            ProrationLineOut(
                kind=line.kind.value,
                amount_minor=line.amount_minor,
                period_start=line.period_start,
                period_end=line.period_end,
                seconds=line.seconds,
                description_key=line.description_key,
            )
            for line in (money.lines if money else ())
        ],
        period_end=money.period_end if money else None,
        invoice_id=change.invoice_id,
    )


def customer_invoices_out(page: StatementPage) -> CustomerInvoiceList:
    out = []
    for statement in page.statements:
        invoice = statement.invoice
        out.append(
            CustomerInvoiceOut(
                **dict(_invoice_out(invoice, statement.lines)),
                credit_applied_minor=invoice.credit_applied_minor,
                credit_notes=[CreditNoteOut.model_validate(n) for n in statement.credit_notes],
                payments=[
                    CustomerPaymentOut(
                        id=p.id,
                        invoice_id=p.invoice_id,
                        provider=p.provider,
                        amount_minor=p.amount_minor,
                        refunded_minor=p.refunded_minor,
                        currency=p.currency,
                        status=p.status,
                        decline_code=p.decline_code,
                        created_at=p.occurred_at,
                    )
                    for p in statement.payments
                ],
            )
        )
    return CustomerInvoiceList(invoices=out, next_before=page.next_before)


def renewed_out(done: ManualRenewal) -> SubscriptionRenewed:
    rest = {f.name: getattr(done, f.name) for f in fields(done) if f.name != "subscription"}
    return SubscriptionRenewed(subscription=subscription_out(done.subscription), **rest)
