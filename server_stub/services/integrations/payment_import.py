"""Importing a bank statement (CSV/XLSX) of payments: every row checked, all or nothing.

Each row goes through the same :func:`payments.apply` as ``POST /external/payments``, so a
contract becomes paid the same way; a row already recorded identically is skipped (a statement
imported twice changes nothing), one recorded with other details is that row's error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime

from sqlalchemy import select, tuple_
from sqlalchemy.orm import Session

from ...portal_models import Contract, Payment
from ..tabular import Format, RowIssues, SheetRow, read_table
from . import payments
from .payments import PaymentReport

COLUMNS = ("source", "external_id", "contract_number", "amount_minor", "currency", "paid_at")
_INTEGER = re.compile(r"[0-9]{1,16}")


@dataclass(frozen=True)
class ImportResult:
    rows: int
    imported: int
    #: Rows already recorded with the same details (skipped).
    already_recorded: int
    #: Numbers of the contracts this import made paid.
    contracts_paid: list[str]


def _paid_at(text: str) -> datetime | None:
    """RFC 3339; a statement's plain date or offset-less date-time (as an XLSX date cell reads)
    is taken as UTC."""
    try:
        if re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", text):
            day = date.fromisoformat(text)
            return datetime(day.year, day.month, day.day, tzinfo=UTC)
        value = datetime.fromisoformat(text)
    except ValueError:
        return None
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)


def _report(row: SheetRow, issues: RowIssues, now: datetime) -> PaymentReport | None:
    before = len(issues.issues)
    for column in COLUMNS:
        if not row.get(column):
            issues.add(row.number, column, "is empty")
    amount_text, paid_text = row.get("amount_minor"), row.get("paid_at")
    if amount_text and not _INTEGER.fullmatch(amount_text):
        issues.add(row.number, "amount_minor", "must be a whole number of minor units")
    paid_at = _paid_at(paid_text) if paid_text else None
    if paid_text and paid_at is None:
        issues.add(row.number, "paid_at", "must be a date or an RFC 3339 date-time")
    elif paid_at is not None and (problem := payments.paid_at_problem(paid_at, now)):
        issues.add(row.number, "paid_at", problem)
    if len(issues.issues) > before or paid_at is None:
        return None
    report = PaymentReport(
        source=row.get("source"),
        external_id=row.get("external_id"),
        contract_number=row.get("contract_number"),
        amount_minor=int(amount_text),
        currency=row.get("currency").upper(),
        paid_at=paid_at,
    )
    for column, problem in payments.check_report(report):
        issues.add(row.number, column, problem)
    return None if len(issues.issues) > before else report


def import_statement(
    session: Session, now: datetime, actor: str, data: bytes, fmt: Format
) -> ImportResult:
    """Validate every row, then apply them all in ``session`` (the caller's one transaction);
    raises :class:`~..tabular.ImportRejected` naming each bad row, having written nothing."""
    rows = read_table(data, fmt, required=COLUMNS)
    issues = RowIssues()
    reports: list[tuple[int, PaymentReport]] = []
    seen: dict[tuple[str, str], int] = {}
    for row in rows:
        report = _report(row, issues, now)
        if report is None:
            continue
        key = (report.source, report.external_id)
        if key in seen:
            issues.add(row.number, "external_id", f"repeats row {seen[key]}")
            continue
        seen[key] = row.number
        reports.append((row.number, report))
    # Locked in one order, so two imports touching the same contracts cannot deadlock.
    contracts = {
        number: payments.lock_contract(session, number)
        for number in sorted({r.contract_number for _, r in reports})
    }
    existing = _existing(session, list(seen))
    new: list[tuple[Contract, PaymentReport]] = []
    already = 0
    for number, report in reports:
        contract = contracts[report.contract_number]
        recorded = existing.get((report.source, report.external_id))
        if recorded is not None:
            if payments.same_report(recorded, report):
                already += 1
            else:
                issues.add(number, "external_id", "already recorded with other details")
        elif contract is None:
            issues.add(number, "contract_number", "no such contract")
        elif problem := payments.currency_problem(contract, report.currency):
            issues.add(number, "currency", problem)
        else:
            new.append((contract, report))
    issues.raise_if_any("the payments import was refused")
    unpaid = {c.id for c in contracts.values() if c is not None and c.paid_at is None}
    for contract, report in new:
        payments.apply(session, now, actor, contract, report)
    paid = sorted(c.number for c in contracts.values() if c and c.id in unpaid and c.paid_at)
    return ImportResult(len(rows), len(new), already, paid)


def _existing(session: Session, keys: list[tuple[str, str]]) -> dict[tuple[str, str], Payment]:
    found: dict[tuple[str, str], Payment] = {}
    # In slices: a statement has up to 20,000 rows, a statement's parameters are limited.
    for start in range(0, len(keys), 500):
        chunk = keys[start : start + 500]
        for payment in session.scalars(
            select(Payment).where(tuple_(Payment.source, Payment.external_id).in_(chunk))
        ):
            found[(payment.source, payment.external_id)] = payment
    return found
