"""The store purchases' reconciler: purchases we know of that RuStore has not finished
(``CREATED``, ``EXECUTED``, ``PAID``) are asked about again, for when a notification never
comes; store subscriptions near the end of their paid window are asked whether still active.
It shares billing's interval and look-back (``billing_reconcile_interval_seconds``,
``billing_reconcile_days``): both are "how often, and how far back, we ask the providers".
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy import select

from agent.protocol import ProviderName

from ...billing_models import BillingSubscription
from ...db import transaction
from ...store_models import StorePurchase
from ..billing.contract import SubscriptionState
from ..context import ServiceContext
from .purchases import StoreService
from .statuses import RANK, InvoiceStatus
from .subscriptions import recheck_window

log = logging.getLogger("tgflow.server.store")

#: Purchases asked about in one round at most (the oldest change first).
BATCH: Final = 100
_UNFINISHED: Final = RANK[InvoiceStatus.PAID]
#: Store subscriptions asked about again: those the license still follows.
_RECHECKED: Final = (SubscriptionState.ACTIVE.value, SubscriptionState.PAST_DUE.value)


class StoreReconciler:
    def __init__(self, ctx: ServiceContext, store: StoreService) -> None:
        self._ctx = ctx
        self._store = store
        self._next_run: datetime | None = None

    def due(self) -> int | None:
        """The sweeper's call: reconcile when the interval passed; how many were asked."""
        if self._store.rustore is None:
            return None
        now = self._ctx.clock.now()
        if self._next_run is not None and now < self._next_run:
            return None
        every = self._ctx.settings.billing_reconcile_interval_seconds
        self._next_run = now + timedelta(seconds=every)
        return self.reconcile(now)

    def reconcile(self, now: datetime) -> int:
        since = now - timedelta(days=self._ctx.settings.billing_reconcile_days)
        with transaction(self._ctx.read) as session:
            invoices = list(
                session.scalars(
                    select(StorePurchase.invoice_id)
                    .where(
                        StorePurchase.ref.startswith("rustore:"),
                        StorePurchase.status_rank <= _UNFINISHED,
                        StorePurchase.updated_at >= since,
                    )
                    .order_by(StorePurchase.status_at)
                    .limit(BATCH)
                )
            )
        sandbox = self._ctx.settings.rustore_sandbox
        for invoice_id in invoices:
            try:
                # As if RuStore had told us of a change now: re-fetched, applied, never back.
                self._store.apply_notification(invoice_id, now, sandbox=sandbox)
            except Exception:  # one purchase failing does not stop the others
                log.warning("store reconcile failed", extra={"invoice": invoice_id}, exc_info=True)
        return len(invoices) + self.recheck_subscriptions(now)

    def recheck_subscriptions(self, now: datetime) -> int:
        """Store subscriptions (active, or on hold within their grace) whose paid window ends
        within the next recheck window are asked about again: one the store still says is
        active is extended before it runs out, one it does not is left to lapse."""
        horizon = now + recheck_window(self._ctx)
        with transaction(self._ctx.read) as session:
            refs = list(
                session.scalars(
                    select(BillingSubscription.payment_method_ref)
                    .where(
                        BillingSubscription.provider == ProviderName.RUSTORE.value,
                        BillingSubscription.state.in_(_RECHECKED),
                        BillingSubscription.paid_through <= horizon,
                        BillingSubscription.payment_method_ref.is_not(None),
                    )
                    .order_by(BillingSubscription.paid_through)
                    .limit(BATCH)
                )
            )
        asked = 0
        for ref in refs:
            try:
                asked += self._store.recheck_subscription(ref or "")
            except Exception:  # one subscription failing does not stop the others
                log.warning("store subscription recheck failed", exc_info=True)
        return asked
