"""Request and response models of the operator's payments and refunds (docs/billing.md,
"Refunds")."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from ..services.billing.plans import MAX_PRICE_MINOR
from ..services.billing.refunds import PaymentView, RefundResult
from .billing_schemas import NoNull
from .wire_numbers import json_integer

RefundMinor = Annotated[int, Field(ge=1, le=MAX_PRICE_MINOR), BeforeValidator(json_integer)]


class RefundIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    amount_minor: RefundMinor | NoNull = Field(
        default=None,
        description="how much to refund, integer minor units; omitted: all that is not yet "
        "refunded. Never more than that.",
    )


class PaymentOut(BaseModel):
    id: str
    provider: str
    payment_ref: str | None
    subscription_id: str | None
    invoice_id: str | None
    amount_minor: int
    refunded_minor: int = Field(description="how much of it went back, integer minor units")
    currency: str
    status: str
    occurred_at: datetime

    @classmethod
    def of(cls, view: PaymentView) -> PaymentOut:
        return cls(**asdict(view))


class PaymentList(BaseModel):
    payments: list[PaymentOut]


class RefundOut(BaseModel):
    payment: PaymentOut
    refund_ref: str = Field(description="the provider's id of the refund")
    amount_minor: int
    succeeded: bool = Field(
        description="false: the provider accepted it but the money is not back yet; its "
        "webhook books it"
    )
    entitlement_ended: bool = Field(
        description="a full refund of the current period's payment: the subscription ended now"
    )

    @classmethod
    def of(cls, result: RefundResult) -> RefundOut:
        return cls(
            payment=PaymentOut.of(result.payment),
            refund_ref=result.refund_ref,
            amount_minor=result.amount_minor,
            succeeded=result.succeeded,
            entitlement_ended=result.entitlement_ended,
        )
