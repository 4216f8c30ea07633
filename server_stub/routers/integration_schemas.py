"""Request and response models of ``/external`` and ``/staff/payments``.

The bounds of a payment report come from ``services.integrations.payments`` (their one home; the
bank-statement import checks the same ones).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from agent.protocol import Rfc3339DateTime

from ..services.integrations import PaymentOutcome
from ..services.integrations.payment_import import ImportResult
from ..services.integrations.payment_queries import PaymentRow
from ..services.integrations.payments import (
    CONTRACT_NUMBER_PATTERN,
    CURRENCY_PATTERN,
    EXTERNAL_ID_PATTERN,
    MAX_AMOUNT_MINOR,
    SOURCE_PATTERN,
)


class PaymentIn(BaseModel):
    """A payment reported by billing/CRM. Strict: ``amount_minor`` is a JSON integer, not a
    string or a float; unknown fields are refused."""

    model_config = ConfigDict(extra="forbid", strict=True)

    source: Annotated[str, StringConstraints(pattern=SOURCE_PATTERN)] = Field(
        description="The reporting system (`1c`, `amocrm`, `bank`); with external_id, the "
        "idempotency key"
    )
    external_id: Annotated[str, StringConstraints(max_length=128, pattern=EXTERNAL_ID_PATTERN)]
    contract_number: Annotated[
        str, StringConstraints(max_length=64, pattern=CONTRACT_NUMBER_PATTERN)
    ]
    amount_minor: int = Field(ge=1, le=MAX_AMOUNT_MINOR, description="Minor units (kopecks)")
    currency: Annotated[str, StringConstraints(pattern=CURRENCY_PATTERN)]
    # Strict mode would refuse the RFC 3339 text itself; the type parses it (lax for this field).
    paid_at: Annotated[Rfc3339DateTime, Field(strict=False)]


class AvailableLicenseOut(BaseModel):
    id: str
    product: str
    plan: str
    file_version: int


class PaymentRecordedOut(BaseModel):
    payment_id: str
    source: str
    external_id: str
    contract_id: str
    contract_number: str
    contract_status: str
    contract_paid_at: datetime | None
    currency: str
    amount_minor: int
    amount_paid: int
    amount_remaining: int
    licenses_available: list[AvailableLicenseOut] = Field(
        description="The contract's active licenses, downloadable now that it is paid (no keys)"
    )

    @classmethod
    def of(cls, result: PaymentOutcome) -> PaymentRecordedOut:
        payment, contract = result.payment, result.contract
        return cls(
            payment_id=payment.id,
            source=payment.source,
            external_id=payment.external_id,
            contract_id=contract.id,
            contract_number=contract.number,
            contract_status=contract.status,
            contract_paid_at=contract.paid_at,
            currency=contract.currency,
            amount_minor=contract.amount_minor,
            amount_paid=result.amount_paid,
            amount_remaining=result.amount_remaining,
            licenses_available=[
                AvailableLicenseOut(
                    id=lic.id, product=lic.product_id, plan=lic.plan, file_version=lic.version
                )
                for lic in result.licenses
            ],
        )


class PaymentOut(BaseModel):
    id: str
    source: str
    external_id: str
    contract_id: str
    contract_number: str
    client_id: str
    amount_minor: int
    currency: str
    paid_at: datetime
    received_at: datetime

    @classmethod
    def of(cls, row: PaymentRow) -> PaymentOut:
        p = row.payment
        return cls(
            id=p.id,
            source=p.source,
            external_id=p.external_id,
            contract_id=p.contract_id,
            contract_number=row.contract_number,
            client_id=row.client_id,
            amount_minor=p.amount_minor,
            currency=p.currency,
            paid_at=p.paid_at,
            received_at=p.received_at,
        )


class PaymentPageOut(BaseModel):
    payments: list[PaymentOut]
    next_cursor: str | None


class PaymentImportOut(BaseModel):
    rows: int
    imported: int
    already_recorded: int = Field(description="Rows recorded before with the same details")
    contracts_paid: list[str] = Field(description="Numbers of the contracts this import paid")

    @classmethod
    def of(cls, result: ImportResult) -> PaymentImportOut:
        return cls(
            rows=result.rows,
            imported=result.imported,
            already_recorded=result.already_recorded,
            contracts_paid=result.contracts_paid,
        )
