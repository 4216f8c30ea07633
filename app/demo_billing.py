"""The demo's subscription billing: paid plans on offer, the fake payment providers' settings,
the pages the payer's browser returns to after the fake provider's checkout, the demo user's
points (granted once, convertible into messages at every demo plan's rate), and the points
products sold through the fake RuStore (bought from the tab at the fake's hosted page).

The fake Stripe and CloudPayments (``server_stub.fake_providers``) run in the demo's process on
free loopback ports: a checkout opened from the "Plans & billing" tab is their hosted page, whose
Pay button takes the payment and sends the signed webhook to the demo backend, exactly as a real
provider would; the backend's webhook worker applies it and the tab sees the subscription active.
"""

from __future__ import annotations

from contextlib import ExitStack, suppress
from dataclasses import fields
from datetime import timedelta
from typing import TYPE_CHECKING, Final

from sqlalchemy import select

from server_stub.db import transaction
from server_stub.errors import NotFound
from server_stub.fake_providers.demo import DemoProviders, demo_providers
from server_stub.models import User
from server_stub.services.auth import normalise_email
from server_stub.services.billing.contract import Interval
from server_stub.services.billing.entitlement import project
from server_stub.services.billing.plans import PlanChanges, PlanSpec
from server_stub.services.points.ledger import Kind
from server_stub.services.store.products import Product, ProductChanges

if TYPE_CHECKING:
    from server_stub.clock import Clock
    from server_stub.wiring import Services

    from .demo import ArtifactServer

#: Who seeds the demo's plans, in the audit log.
DEMO_ACTOR: Final = "system:demo"
#: The demo plan the demo user is assigned (``server_stub.demo``): not for sale.
_ASSIGNED_PLAN: Final = "demo"
#: Extra messages one point buys on every demo plan (``POST /usage/topup``).
DEMO_TOPUP_RATE: Final = 10
#: The points the demo user is granted, once (the key makes a restart's grant a replay).
DEMO_POINTS: Final = 500
_DEMO_POINTS_KEY: Final = "demo:welcome-points"


#: The points products the demo sells through its fake RuStore (operator-managed rows, as
#: ``POST /staff/store/products`` makes them), each known to the fake at the same price.
DEMO_POINTS_PRODUCTS: Final = (
    Product("points_100", "consumable", "100 points", 9900, "RUB", 100, None, True),
    Product("points_500", "consumable", "500 points", 39900, "RUB", 500, None, True),
)


def _paid_plan(
    name: str, quota: int, devices: int, price: int, per: Interval, rank: int
) -> PlanSpec:
    return PlanSpec(
        name=name,
        monthly_quota=quota,
        max_devices=devices,
        features=("broadcast",),
        price_minor=price,
        currency="USD",
        interval=per,
        rank=rank,
        topup_messages_per_point=DEMO_TOPUP_RATE,
    )


#: The plans the demo offers: two tiers (rank 1 and 2), the higher one also yearly.
DEMO_PLANS: Final = (
    _paid_plan("basic", 1000, 3, 990, Interval.MONTH, rank=1),
    _paid_plan("pro", 10_000, 5, 2990, Interval.MONTH, rank=2),
    _paid_plan("pro-yearly", 10_000, 5, 29_900, Interval.YEAR, rank=2),
)

#: Where the fake provider's checkout sends the browser back (served by the demo's own small
#: HTTP server: the reference backend serves no pages).
PAID_PAGE: Final = "/billing/paid"
CANCELED_PAGE: Final = "/billing/canceled"

_PAGE = "<!doctype html><meta charset=utf-8><title>TGFlow demo</title><h1>{title}</h1><p>{text}</p>"
_PAID = _PAGE.format(
    title="Payment done",
    text="Go back to TGFlow: the Plans &amp; billing tab shows the subscription by itself "
    "once the payment provider has told the demo backend.",
)
_CANCELED = _PAGE.format(
    title="Checkout canceled",
    text="Nothing was charged. Go back to TGFlow to choose again.",
)


def seed_demo_plans(services: Services) -> None:
    """Offer :data:`DEMO_PLANS` (created, or brought back to these values on a restart), and
    take the demo user's assigned plan off the offer (the user keeps it until subscribing)."""
    plans = services.billing.plans
    for spec in DEMO_PLANS:
        try:
            plans.get(spec.name)
        except NotFound:
            plans.create(DEMO_ACTOR, spec)
            continue
        values = {f.name: getattr(spec, f.name) for f in fields(spec) if f.name != "name"}
        plans.change(DEMO_ACTOR, spec.name, PlanChanges(**values))
    with suppress(NotFound):
        plans.retire(DEMO_ACTOR, _ASSIGNED_PLAN)


def seed_demo_points(services: Services, email: str) -> None:
    """The demo user's plan sells messages for points (:data:`DEMO_TOPUP_RATE`), and the user
    has :data:`DEMO_POINTS` to try it with: granted on the first start only (an idempotency key
    of the user's wallet), so what a demo run spent stays spent."""
    with suppress(NotFound):
        services.billing.plans.change(
            DEMO_ACTOR, _ASSIGNED_PLAN, PlanChanges(topup_messages_per_point=DEMO_TOPUP_RATE)
        )
    with transaction(services.ctx.read) as session:
        user_id = session.scalar(select(User.id).where(User.email == normalise_email(email)))
    if user_id is not None:
        services.points.credit(
            user_id,
            DEMO_POINTS,
            kind=Kind.GRANT,
            actor=DEMO_ACTOR,
            reason="demo points",
            idempotency_key=_DEMO_POINTS_KEY,
        )


def seed_demo_products(services: Services, fakes: DemoProviders) -> None:
    """Sell :data:`DEMO_POINTS_PRODUCTS` (created, or brought back to these values on a
    restart) and tell the fake RuStore their prices."""
    catalog = services.store.products
    for product in DEMO_POINTS_PRODUCTS:
        current = catalog.get(product.id)
        if current is None:
            catalog.create(DEMO_ACTOR, product)
        elif current != product:
            values = {f.name: getattr(product, f.name) for f in fields(ProductChanges)}
            catalog.change(DEMO_ACTOR, product.id, ProductChanges(**values))
        if fakes.rustore is not None:
            fakes.rustore.add_product(product.id, product.price_minor, product.currency)


def keep_paid_plan(services: Services, email: str) -> None:
    """Give the demo user back what billing entitles them to: seeding the user (on every start)
    assigns the demo plan, which would otherwise hide a subscription paid on an earlier run."""
    ctx = services.ctx
    grace = timedelta(days=ctx.settings.billing_grace_days)
    with transaction(ctx.write) as session:
        user_id = session.scalar(select(User.id).where(User.email == normalise_email(email)))
        if user_id is not None:
            project(session, user_id, grace, ctx.clock.now())


def start_demo_providers(
    stack: ExitStack, pages: ArtifactServer, clock: Clock | None = None
) -> tuple[DemoProviders, dict[str, object]]:
    """Serve both fake providers (closed with ``stack``; on the backend's ``clock``, so their
    events' times and signatures agree with it) and the return pages; returns them with the
    backend ``Settings`` fields that point billing at them, the webhook secrets included."""
    fakes = stack.enter_context(demo_providers(clock))
    settings: dict[str, object] = {
        **fakes.settings,
        "stripe_webhook_secrets": [fakes.stripe_webhook_secret],
        "billing_success_url": pages.serve(PAID_PAGE, _PAID.encode(), "text/html; charset=utf-8"),
        "billing_cancel_url": pages.serve(
            CANCELED_PAGE, _CANCELED.encode(), "text/html; charset=utf-8"
        ),
    }
    return fakes, settings
