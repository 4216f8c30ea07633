"""The facade of subscription billing (issue #12): what routers, the CLI and the webhook worker
hold. Each area is a manager of its own module: plans and prices (plans.py), the customer's
subscription (subscriptions.py), provider events (events.py); the state machine is pure
(states.py) and the entitlement follows every change (entitlement.py).
"""

from __future__ import annotations

from collections.abc import Mapping

from ...db import transaction
from ..context import ServiceContext
from .changes import SubscriptionChanges
from .contract import ProviderAdapter, ProviderName
from .events import BillingEvents
from .manual_renewal import ManualRenewals
from .plans import BillingPlans
from .reconciler import Reconciler
from .refunds import Refunds
from .renewals import DunningOutcome, Renewals, monthly_recurring_revenue
from .statements import Statements
from .subscriptions import Subscriptions


class BillingService:
    def __init__(
        self, ctx: ServiceContext, adapters: Mapping[ProviderName, ProviderAdapter] | None = None
    ) -> None:
        #: The configured providers; one not here refuses checkouts (fails closed).
        self._adapters: dict[ProviderName, ProviderAdapter] = dict(adapters or {})
        self.plans = BillingPlans(ctx)
        self.subscriptions = Subscriptions(ctx, self._adapters)
        self.events = BillingEvents(ctx)
        self.renewals = Renewals(ctx, self._adapters, self.events)
        self._ctx = ctx
        self.refunds = Refunds(ctx, self._adapters, self.events)
        self.reconciler = Reconciler(ctx, self._adapters, self.events)
        self.changes = SubscriptionChanges(ctx, self._adapters)
        self.statements = Statements(ctx)
        self.manual = ManualRenewals(ctx, self._adapters, self.renewals, self.subscriptions)

        self.create_subscription = self.subscriptions.create
        self.cancel = self.subscriptions.cancel
        self.pause = self.subscriptions.pause
        self.resume = self.subscriptions.resume
        self.status = self.subscriptions.status
        self.history = self.subscriptions.history
        self.tick = self.subscriptions.tick
        self.preview_change = self.changes.preview
        self.change_plan = self.changes.change
        self.apply_event = self.events.apply_event
        self.check_invoice = self.events.check_invoice
        self.refund = self.refunds.refund
        self.payments = self.refunds.payments
        self.invoices = self.statements.page
        self.renew_now = self.manual.renew
        self.reconcile = self.reconciler.reconcile

    def renew_due(self) -> dict[DunningOutcome, int]:
        """One pass of renewals and dunning (the sweeper's job, ``tgflow-server billing renew``):
        charge what is due, then let the clock end what ran out, then refresh the MRR gauge."""
        counts = self.renewals.renew_due()
        self.subscriptions.tick()
        with transaction(self._ctx.read) as session:
            mrr = monthly_recurring_revenue(session)
        gauge = self._ctx.metrics.billing_mrr
        gauge.clear()  # a currency with no active subscription left is no longer reported
        for currency, amount in mrr.items():
            gauge.labels(currency).set(amount)
        return counts

    @property
    def adapters(self) -> Mapping[ProviderName, ProviderAdapter]:
        return dict(self._adapters)

    def add_adapter(self, adapter: ProviderAdapter) -> None:
        """Configure a provider (at start-up, once its secrets are known), by its ``name``."""
        self._adapters[adapter.name] = adapter
