"""The reconciler (docs/billing.md, "Reconciler"): what a lost webhook left behind, repaired from
the provider's own truth through the same ``apply_event`` path (idempotent by event id, payment
and refund), so running it twice, or alongside the webhook, changes nothing more.

For each configured provider: its undelivered events since ``now - days`` (Stripe's
``delivery_success=false``), then ``payment_truth`` of each of our invoices that is still open and
younger than that. A provider that cannot be reached is reported and skipped: nothing of it moves.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select

from ...billing_models import BillingInvoice, BillingSubscription
from ...db import transaction
from ..context import ServiceContext
from .contract import ProviderAdapter, ProviderName, ProviderRefused, ProviderUnavailable
from .events import ApplyOutcome, BillingEvents

log = logging.getLogger("tgflow.server.billing.reconciler")


@dataclass
class ReconcileReport:
    #: Invoices whose truth was asked for, and events (undelivered or truth) looked at.
    checked: int = 0
    #: Events that changed something (``applied``).
    repaired: int = 0
    #: Providers that could not be asked (name → why).
    failed: dict[str, str] = field(default_factory=dict)


class Reconciler:
    def __init__(
        self,
        ctx: ServiceContext,
        adapters: Mapping[ProviderName, ProviderAdapter],
        events: BillingEvents,
    ) -> None:
        self._ctx = ctx
        self._adapters = adapters
        self._events = events
        self._last_run: datetime | None = None

    def reconcile(self, now: datetime | None = None) -> ReconcileReport:
        now = now or self._ctx.clock.now()
        since = now - timedelta(days=self._ctx.settings.billing_reconcile_days)
        report = ReconcileReport()
        for name, adapter in sorted(self._adapters.items()):
            try:
                self._provider(name, adapter, since, report)
            except (ProviderUnavailable, ProviderRefused) as exc:
                report.failed[name.value] = str(exc) or type(exc).__name__
                log.warning("billing reconcile: %s could not be asked: %s", name.value, exc)
        log.info(
            "billing reconcile: %d checked, %d repaired%s",
            report.checked,
            report.repaired,
            f", failed: {', '.join(report.failed)}" if report.failed else "",
        )
        return report

    def due(self) -> ReconcileReport | None:
        """The sweeper's call: reconcile when ``billing_reconcile_interval_seconds`` passed."""
        interval = timedelta(seconds=self._ctx.settings.billing_reconcile_interval_seconds)
        now = self._ctx.clock.now()
        if self._last_run is not None and now - self._last_run < interval:
            return None
        self._last_run = now
        return self.reconcile(now)

    def _provider(
        self, name: ProviderName, adapter: ProviderAdapter, since: datetime, report: ReconcileReport
    ) -> None:
        # Everything is asked before anything is applied: a provider failing halfway changes
        # nothing of it.
        found = list(adapter.undelivered_events(since))
        invoices = self._open_invoices(name, since)
        for invoice_id in invoices:
            found.extend(adapter.payment_truth(invoice_id))
        report.checked += len(invoices)
        for event in sorted(found, key=lambda e: (e.occurred_at, e.event_id)):
            report.checked += 1
            if self._events.apply_event(event) is ApplyOutcome.APPLIED:
                report.repaired += 1

    def _open_invoices(self, name: ProviderName, since: datetime) -> list[str]:
        with transaction(self._ctx.read) as session:
            return list(
                session.scalars(
                    select(BillingInvoice.id)
                    .join(
                        BillingSubscription,
                        BillingSubscription.id == BillingInvoice.subscription_id,
                    )
                    .where(
                        BillingSubscription.provider == name.value,
                        BillingInvoice.status == "open",
                        BillingInvoice.created_at >= since,
                    )
                    .order_by(BillingInvoice.created_at)
                )
            )
