"""Integrations with billing, CRM and the bank (docs/licensing.md, "Integrations"): the signed
``/external`` API (payments in, licenses out) and the staff side of payments (list, export, import
of a bank statement).

:class:`IntegrationService` is the facade routers hold; each area is a module of this package.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ...db import transaction
from ...errors import IdempotencyConflict
from ..audit.chain import record
from ..context import ServiceContext
from ..tabular import Format, write_table
from . import license_export, payment_import, payment_queries, payments, signatures
from .license_export import LicenseFilter
from .payment_import import ImportResult
from .payment_queries import MAX_PAGE, PaymentFilter, PaymentPage
from .payments import PaymentOutcome, PaymentReport, integration_actor
from .signatures import SignedRequest
from .timestamps import utc_text

T = TypeVar("T")

__all__ = [
    "MAX_PAGE",
    "ImportResult",
    "IntegrationService",
    "LicenseFilter",
    "PaymentFilter",
    "PaymentOutcome",
    "PaymentPage",
    "PaymentReport",
    "SignedRequest",
]


class IntegrationService:
    def __init__(self, ctx: ServiceContext) -> None:
        self._ctx = ctx

    def verify(self, request: SignedRequest) -> None:
        """Accept a signed ``/external`` request or raise (503 unset, 401 bad or stale)."""
        secrets = [
            s.get_secret_value().encode("utf-8") for s in self._ctx.settings.external_hmac_secrets
        ]
        signatures.verify(request, secrets, self._ctx.clock.now())

    def _retrying(self, work: Callable[[Session, datetime], T]) -> T:
        """``work`` in one write transaction, run again once if a concurrent writer recorded
        the same payment id between our check and our insert (the unique key refused ours): the
        second run sees that payment and answers as for a retry, or a conflict."""
        try:
            with transaction(self._ctx.write) as session:
                return work(session, self._ctx.clock.now())
        except IntegrityError:
            pass
        try:
            with transaction(self._ctx.write) as session:
                return work(session, self._ctx.clock.now())
        except IntegrityError:
            raise IdempotencyConflict(
                "another report of the same payment is being recorded; retry"
            ) from None

    def record_payment(self, report: PaymentReport) -> PaymentOutcome:
        """Record a payment from billing/CRM (``POST /external/payments``), idempotently."""
        actor = integration_actor(report.source)
        return self._retrying(
            lambda session, now: payments.record_report(session, now, actor, report)
        )

    def import_payments(self, actor: str, data: bytes, fmt: Format) -> ImportResult:
        """Import a bank statement: every row valid, or nothing imported."""

        def work(session: Session, now: datetime) -> ImportResult:
            result = payment_import.import_statement(session, now, actor, data, fmt)
            details = {
                "format": fmt,
                "rows": result.rows,
                "imported": result.imported,
                "already_recorded": result.already_recorded,
            }
            record(session, now, actor, "payments.import", "payments", details)
            return result

        return self._retrying(work)

    def list_payments(self, filters: PaymentFilter, cursor: str | None, limit: int) -> PaymentPage:
        with transaction(self._ctx.read) as session:
            return payment_queries.page(session, filters, cursor, limit)

    def export_payments(self, actor: str, filters: PaymentFilter, fmt: Format) -> bytes:
        with transaction(self._ctx.read) as session:
            rows = list(payment_queries.export_rows(session, filters))
        with transaction(self._ctx.write) as session:
            details = {"format": fmt, "rows": len(rows), **_filter_details(filters)}
            record(session, self._ctx.clock.now(), actor, "payments.export", "payments", details)
        return write_table(fmt, payment_queries.EXPORT_COLUMNS, rows)

    def export_licenses_json(self, filters: LicenseFilter) -> Iterator[bytes]:
        """``{"generated_at": …, "licenses": [...]}``, streamed a batch at a time."""
        now = self._ctx.clock.now()
        with transaction(self._ctx.snapshot) as session:
            yield b'{"generated_at": ' + json.dumps(utc_text(now)).encode() + b', "licenses": ['
            sep = b""
            for item in license_export.records(session, filters, now):
                yield sep + json.dumps(item, ensure_ascii=False).encode("utf-8")
                sep = b", "
            yield b"]}"

    def export_licenses_csv(self, filters: LicenseFilter) -> bytes:
        now = self._ctx.clock.now()
        with transaction(self._ctx.snapshot) as session:
            found = license_export.records(session, filters, now)
            return write_table("csv", license_export.COLUMNS, map(license_export.csv_cells, found))


def _filter_details(filters: PaymentFilter) -> dict[str, Any]:
    return {
        key: utc_text(value) if isinstance(value, datetime) else value
        for key, value in vars(filters).items()
        if value is not None
    }
