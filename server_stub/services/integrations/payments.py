"""Recording a payment against a contract: the one code path of ``POST /external/payments`` and
the staff import of bank statements (docs/licensing.md, "Integrations").

A payment is idempotent on ``(source, external_id)``: the same report again is answered with the
payment already recorded, another report under the same id is a conflict. When a contract's
payments add up to its amount, the contract becomes ``paid`` (``status`` and ``paid_at``), which is
what makes its licenses downloadable and activatable.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ...errors import IdempotencyConflict, NotFound, ValidationFailed
from ...portal_models import Contract, License, Payment
from ..audit.chain import record
from .timestamps import utc_text

# The bounds of a report, one home for the API's schema and the import's row checks.
SOURCE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,63}$"
#: Printable, no surrounding blanks: bank and CRM ids (Cyrillic included) as they are.
EXTERNAL_ID_PATTERN = r"^[^\x00-\x1f\x7f\s](?:[^\x00-\x1f\x7f]{0,126}[^\x00-\x1f\x7f\s])?$"
CONTRACT_NUMBER_PATTERN = r"^[^\x00-\x1f\x7f\s](?:[^\x00-\x1f\x7f]{0,62}[^\x00-\x1f\x7f\s])?$"
CURRENCY_PATTERN = r"^[A-Z]{3}$"
MAX_AMOUNT_MINOR = 10**15
#: Dates before this are typing errors, not payments; a date ahead of the server's clock by more
#: than the signing tolerance is one too (another system's clock may run a little ahead).
EARLIEST_PAID_AT = datetime(2000, 1, 1, tzinfo=UTC)
PAID_AT_AHEAD = timedelta(seconds=300)
#: Contract statuses a completed payment moves to ``paid`` (a closed one stays closed).
_PAYABLE = ("draft", "signed")


def integration_actor(source: str) -> str:
    """The audit actor of a report that came through the signed API."""
    return f"integration:{source}"


@dataclass(frozen=True)
class PaymentReport:
    """A payment as billing/CRM or a bank statement reports it (already validated)."""

    source: str
    external_id: str
    contract_number: str
    amount_minor: int
    currency: str
    paid_at: datetime

    def canonical(self) -> dict[str, Any]:
        """The report as stored in ``payments.raw``; two reports are the same when these are."""
        return {
            "source": self.source,
            "external_id": self.external_id,
            "contract_number": self.contract_number,
            "amount_minor": self.amount_minor,
            "currency": self.currency,
            "paid_at": utc_text(self.paid_at),
        }


@dataclass(frozen=True)
class AvailableLicense:
    id: str
    product_id: str
    plan: str
    version: int


@dataclass(frozen=True)
class PaymentOutcome:
    payment: Payment
    contract: Contract
    amount_paid: int
    licenses: list[AvailableLicense]
    #: The report was already recorded (a retry): nothing changed.
    replayed: bool

    @property
    def amount_remaining(self) -> int:
        return max(0, self.contract.amount_minor - self.amount_paid)


def check_report(report: PaymentReport) -> list[tuple[str, str]]:
    """(field, problem) for each bound ``report`` breaks; the API's schema enforces the same."""
    problems = []
    for name, pattern in (
        ("source", SOURCE_PATTERN),
        ("external_id", EXTERNAL_ID_PATTERN),
        ("contract_number", CONTRACT_NUMBER_PATTERN),
        ("currency", CURRENCY_PATTERN),
    ):
        if not re.fullmatch(pattern, getattr(report, name)):
            problems.append((name, f"does not match {pattern}"))
    if not 1 <= report.amount_minor <= MAX_AMOUNT_MINOR:
        problems.append(("amount_minor", f"must be between 1 and {MAX_AMOUNT_MINOR}"))
    return problems


def paid_at_problem(paid_at: datetime, now: datetime) -> str | None:
    if paid_at < EARLIEST_PAID_AT:
        return f"must not be before {EARLIEST_PAID_AT.date().isoformat()}"
    if paid_at > now + PAID_AT_AHEAD:
        return "must not be in the future"
    return None


def lock_contract(session: Session, number: str) -> Contract | None:
    """The contract, locked until commit: payments to one contract apply one at a time, so two
    partial payments arriving together both see each other's amount (SQLite's write
    transaction is already exclusive)."""
    return session.scalar(select(Contract).where(Contract.number == number).with_for_update())


def find_payment(session: Session, source: str, external_id: str) -> Payment | None:
    return session.scalar(
        select(Payment).where(Payment.source == source, Payment.external_id == external_id)
    )


def same_report(payment: Payment, report: PaymentReport) -> bool:
    return dict(payment.raw) == report.canonical()


def conflict(report: PaymentReport) -> IdempotencyConflict:
    return IdempotencyConflict(
        f"payment {report.external_id!r} of {report.source!r} was already reported with "
        "other details"
    )


def currency_problem(contract: Contract, currency: str) -> str | None:
    if currency != contract.currency:
        return f"contract {contract.number} is in {contract.currency}, not {currency}"
    return None


def amount_paid(session: Session, contract: Contract) -> int:
    total = session.scalar(
        select(func.coalesce(func.sum(Payment.amount_minor), 0)).where(
            Payment.contract_id == contract.id, Payment.currency == contract.currency
        )
    )
    return int(total or 0)


def available_licenses(session: Session, contract: Contract) -> list[AvailableLicense]:
    """The contract's licenses a paid contract makes downloadable (none while unpaid)."""
    if contract.paid_at is None:
        return []
    rows = session.execute(
        select(License.id, License.product_id, License.plan, License.version)
        .where(License.contract_id == contract.id, License.status == "active")
        .order_by(License.created_at, License.id)
    )
    return [AvailableLicense(*row) for row in rows]


def outcome(
    session: Session, payment: Payment, contract: Contract, *, replayed: bool
) -> PaymentOutcome:
    return PaymentOutcome(
        payment=payment,
        contract=contract,
        amount_paid=amount_paid(session, contract),
        licenses=available_licenses(session, contract),
        replayed=replayed,
    )


def apply(
    session: Session, now: datetime, actor: str, contract: Contract, report: PaymentReport
) -> Payment:
    """Insert the payment (its contract locked, its id new, its currency checked) and mark the
    contract paid when its payments now cover its amount; both audited."""
    payment = Payment(
        contract_id=contract.id,
        source=report.source,
        external_id=report.external_id,
        amount_minor=report.amount_minor,
        currency=report.currency,
        paid_at=report.paid_at,
        received_at=now,
        raw=report.canonical(),
    )
    session.add(payment)
    # Now, not at commit: a concurrent report of the same id fails here, inside the caller's
    # retry, rather than after the audit entries were queued.
    session.flush()
    obj = f"contract/{contract.id}"
    details = {"payment_id": payment.id, **report.canonical()}
    record(session, now, actor, "payment.record", obj, details)
    paid = amount_paid(session, contract)
    if contract.status in _PAYABLE and contract.paid_at is None and paid >= contract.amount_minor:
        contract.status = "paid"
        # The date the money arrived (the completing payment's), not when we heard of it.
        contract.paid_at = report.paid_at
        contract.updated_at = now
        record(
            session,
            now,
            actor,
            "contract.paid",
            obj,
            {"number": contract.number, "amount_paid": paid, "currency": contract.currency},
        )
    return payment


def record_report(
    session: Session, now: datetime, actor: str, report: PaymentReport
) -> PaymentOutcome:
    """The API's path: replay, conflict, unknown contract, wrong currency, or a new payment."""
    problem = paid_at_problem(report.paid_at, now)
    if problem:
        raise ValidationFailed(
            f"paid_at {problem}",
            errors=[{"loc": ["body", "paid_at"], "msg": problem, "type": "value_error"}],
        )
    contract = lock_contract(session, report.contract_number)
    existing = find_payment(session, report.source, report.external_id)
    if existing is not None:
        if not same_report(existing, report):
            raise conflict(report)
        held = contract or session.get(Contract, existing.contract_id)
        assert held is not None  # the foreign key keeps it
        return outcome(session, existing, held, replayed=True)
    if contract is None:
        raise NotFound(f"no contract numbered {report.contract_number!r}")
    mismatch = currency_problem(contract, report.currency)
    if mismatch:
        raise ValidationFailed(
            mismatch,
            errors=[{"loc": ["body", "currency"], "msg": mismatch, "type": "currency_mismatch"}],
        )
    payment = apply(session, now, actor, contract, report)
    return outcome(session, payment, contract, replayed=False)
