"""Subscription billing of :class:`app.core.Core`: the plans on offer, the account's
subscription, checkout, plan changes with their prorated amounts, cancel and resume, invoices;
and the points wallet shown beside them (balance, history, converting points into messages,
buying points in the store: :mod:`app.core_points`).

A part of the core kept in its own module, like :mod:`app.core_accounts`; :class:`Core` derives
from :class:`CoreBilling`. The requests go through the agent's billing client, which shares the
license client's session (its access token, refreshed when it expires).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from agent.protocol import (
    CancelWhen,
    ChangeWhen,
    CustomerInvoiceOut,
    PlanChangeOut,
    PlanOut,
    PointsBalance,
    PointsEntryOut,
    ProductKind,
    ProductOut,
    ProviderName,
    SubscriptionOut,
)

from .catalog import N_, story
from .core_points import CorePoints

if TYPE_CHECKING:
    from agent.billing_client import AsyncBillingClient

log = logging.getLogger("tgflow.core")

#: The providers by the names their customers know.
PROVIDER_NAMES = {ProviderName.STRIPE: "Stripe", ProviderName.CLOUDPAYMENTS: "CloudPayments"}
#: How many invoices the tab shows (the newest).
INVOICES_SHOWN = 20
#: How many changes of the points balance the tab shows (the newest).
POINTS_HISTORY_SHOWN = 20


@dataclass(frozen=True)
class BillingSnapshot:
    """The "Plans & billing" tab's content."""

    #: The plans on offer, by rank then price.
    plans: tuple[PlanOut, ...]
    #: The account's latest subscription (``None``: it never subscribed).
    subscription: SubscriptionOut | None
    #: The newest invoices first, with their payments.
    invoices: tuple[CustomerInvoiceOut, ...]
    #: The plan the license is on now (an operator may have assigned one without billing).
    license_plan: str | None
    #: The points wallet (``None``: not read).
    points: PointsBalance | None = None
    #: The newest changes of the points balance first.
    points_history: tuple[PointsEntryOut, ...] = ()
    #: The points products on sale, cheapest first (empty: none, or no store here to buy in).
    points_products: tuple[ProductOut, ...] = ()
    #: A store is set up here to buy points in (:attr:`app.core_points.CorePoints.sells_points`).
    points_store: bool = False

    def topup_rate(self) -> int | None:
        """How many messages one point buys on the license's plan; ``None``: unknown (a plan
        assigned by an operator is not on offer, so its rate is not published — the server
        applies it when converting)."""
        name = self.license_plan
        if name is None and self.subscription is not None:
            name = self.subscription.plan
        for plan in self.plans:
            if plan.name == name:
                return plan.topup_messages_per_point
        return None


@dataclass(frozen=True)
class Converted:
    """Points converted into messages of the current period, and the tab reloaded."""

    points: int
    messages: int
    snapshot: BillingSnapshot


class CoreBilling(CorePoints):
    """The billing part of the core (see :class:`app.core.Core`)."""

    _billing_client: AsyncBillingClient | None = None

    @property
    def billing(self) -> AsyncBillingClient:
        """The billing client, on the license client's session (built on first use)."""
        if self._billing_client is None:
            from agent.billing_client import AsyncBillingClient

            self._billing_client = AsyncBillingClient(self.client)
        return self._billing_client

    async def billing_snapshot(self) -> BillingSnapshot:
        """The plans, the subscription, the newest invoices, the license's plan and the points
        (balance and newest changes)."""
        self._need_account()
        plans = await self.billing.plans()
        subscription = await self.billing.status()
        page = await self.billing.invoices(limit=INVOICES_SHOWN)
        license_plan = (await self.client.license()).info.plan
        balance = await self.points.balance()
        history = await self.points.history(limit=POINTS_HISTORY_SHOWN)
        products: tuple[ProductOut, ...] = ()
        if self.sells_points:
            listed = (await self.points.products()).products
            consumables = [p for p in listed if p.kind == ProductKind.CONSUMABLE and p.points]
            products = tuple(sorted(consumables, key=lambda p: (p.price_minor, p.id)))
        return BillingSnapshot(
            plans=tuple(plans.plans),
            subscription=subscription,
            invoices=tuple(page.invoices),
            license_plan=license_plan,
            points=balance,
            points_history=tuple(history.entries),
            points_products=products,
            points_store=self.sells_points,
        )

    async def convert_points(self, points: int) -> Converted:
        """Convert ``points`` into extra messages of the current period at the plan's rate;
        the tab's content reloaded after it (the License tab reads its quota itself)."""
        self._need_account()
        done = await self.points.topup(points)
        story(log, N_("log.points.converted"), points=points, messages=done.messages)
        return Converted(points, done.messages, await self.billing_snapshot())

    async def billing_status(self) -> SubscriptionOut | None:
        """Only the subscription (what the tab polls while a payment is awaited)."""
        self._need_account()
        return await self.billing.status()

    async def subscribe(self, plan: str, provider: ProviderName) -> str:
        """Open a checkout for ``plan`` with ``provider``; returns its URL (for the browser).
        The subscription is ``incomplete`` until the provider reports the payment."""
        self._need_account()
        created = await self.billing.create(plan, provider)
        story(log, N_("log.billing.checkout"), plan=plan, provider=PROVIDER_NAMES[provider])
        return created.checkout_url

    async def preview_plan_change(self, plan: str, when: ChangeWhen) -> PlanChangeOut:
        """What changing to ``plan`` would bill (nothing changes)."""
        self._need_account()
        return await self.billing.preview_change(plan, when)

    async def change_plan(self, plan: str, when: ChangeWhen) -> BillingSnapshot:
        self._need_account()
        await self.billing.change_plan(plan, when)
        story(log, N_("log.billing.plan_changed"), plan=plan)
        return await self.billing_snapshot()

    async def renew_subscription(self) -> str | None:
        """Pay the renewal that is due (past due or unpaid): on the kept card (``None``), else
        the URL of a checkout to pay with another card."""
        self._need_account()
        renewed = await self.billing.renew()
        key = N_("log.billing.renewal_paid") if renewed.paid else N_("log.billing.checkout")
        sub = renewed.subscription
        story(log, key, plan=sub.plan, provider=PROVIDER_NAMES[sub.provider])
        return None if renewed.paid else renewed.checkout_url

    async def cancel_subscription(self, when: CancelWhen) -> BillingSnapshot:
        self._need_account()
        await self.billing.cancel(when)
        story(log, N_("log.billing.canceled"))
        return await self.billing_snapshot()

    async def resume_subscription(self) -> BillingSnapshot:
        self._need_account()
        await self.billing.resume()
        story(log, N_("log.billing.resumed"))
        return await self.billing_snapshot()
