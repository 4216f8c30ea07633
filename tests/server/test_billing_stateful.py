"""The subscription state machine driven at random through BillingService (hypothesis stateful):
whatever the customer, the provider (in or out of order) and the clock do,

- every recorded transition is one the machine allows (states.TRANSITIONS);
- ``paid_through`` is never shortened, except by a full refund of the period;
- the entitlement the hot paths read is exactly ``now < entitled_until``, follows the current
  subscription, and a period paid and not refunded is always in force.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import select

from agent.protocol import CancelWhen
from server_stub.billing_models import (
    BillingInvoice,
    BillingPayment,
    BillingSubscription,
    BillingTransition,
)
from server_stub.db import transaction
from server_stub.models import Subscription
from server_stub.services.billing.calendar import add_interval
from server_stub.services.billing.common import Actor, current_subscription
from server_stub.services.billing.contract import EventKind, Interval, SubscriptionState
from server_stub.services.billing.entitlement import entitled_now, entitlement_end
from server_stub.services.billing.invoices import add_line, new_invoice
from server_stub.services.billing.states import TRANSITIONS, IllegalTransition
from tests.helpers.billing import BillingWorld, billing_world
from tests.helpers.databases import postgres_database

S = SubscriptionState
#: Every (from, to) some trigger allows.
ALLOWED = {(src, dst) for (src, _), targets in TRANSITIONS.items() for dst in targets}
_refs = itertools.count(1)


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BillingWorld]:
    data = tmp_path_factory.mktemp("billing-stateful")
    if request.param == "sqlite":
        with billing_world(f"sqlite:///{data / 'tgflow.db'}", data / "data") as w:
            yield w
    else:
        with postgres_database() as url, billing_world(url, data / "data") as w:
            yield w


class SubscriptionMachine(RuleBasedStateMachine):
    world: BillingWorld
    #: The states every example reached, for the test's check that histories went through them.
    reached: set[str]

    def __init__(self) -> None:
        super().__init__()
        self.world.reset()
        self.user = self.world.new_user()
        self.refunded: set[str] = set()
        #: paid_through as last seen, per subscription.
        self.seen: dict[str, datetime | None] = {}

    # --- helpers ---------------------------------------------------------------------------

    def current(self) -> BillingSubscription | None:
        with transaction(self.world.services.ctx.read) as session:
            return current_subscription(session, self.user)

    def open_invoice(self, sub: BillingSubscription) -> str | None:
        with transaction(self.world.services.ctx.read) as session:
            return session.scalar(
                select(BillingInvoice.id).where(
                    BillingInvoice.subscription_id == sub.id, BillingInvoice.status == "open"
                )
            )

    def apply(
        self, kind: EventKind, sub: BillingSubscription, invoice: str | None = None, **kw: object
    ) -> None:
        kw.setdefault("payment_ref", f"pi_m{next(_refs)}")
        self.world.billing.apply_event(
            self.world.event(
                kind, invoice, subscription_id=sub.id, amount_minor=kw.pop("amount", None), **kw
            )
        )

    # --- the customer ------------------------------------------------------------------------

    @initialize(plan=st.sampled_from(["pro", "trial-pro", "pro-year"]))
    def checkout(self, plan: str) -> None:
        """Every history starts with a checkout (one without is not a billing history)."""
        self.world.subscribe(self.user, plan)

    @rule(plan=st.sampled_from(["pro", "trial-pro", "pro-year"]))
    def subscribe(self, plan: str) -> None:
        sub = self.current()
        if sub is not None and S(sub.state) not in (S.INCOMPLETE, S.INCOMPLETE_EXPIRED, S.CANCELED):
            return
        self.world.subscribe(self.user, plan)

    @rule(
        when=st.sampled_from(list(CancelWhen)), act=st.sampled_from(["cancel", "pause", "resume"])
    )
    def customer_acts(self, when: CancelWhen, act: str) -> None:
        if self.current() is None:
            return
        actor = Actor.user(self.user)
        try:
            if act == "cancel":
                self.world.billing.cancel(actor, self.user, when)
            elif act == "pause":
                self.world.billing.pause(actor, self.user)
            else:
                self.world.billing.resume(actor, self.user)
        except IllegalTransition:
            pass  # the state refused it; the invariants check nothing moved wrongly

    # --- the provider --------------------------------------------------------------------------

    @rule(kind=st.sampled_from(list(EventKind)), late_hours=st.sampled_from([0, 0, 0, 30]))
    def provider_reports(self, kind: EventKind, late_hours: int) -> None:
        sub = self.current()
        if sub is None:
            return
        at = self.world.clock.now() - timedelta(hours=late_hours)
        invoice = self.open_invoice(sub)
        if kind is EventKind.REFUNDED:
            with transaction(self.world.services.ctx.read) as session:
                ref = session.scalar(
                    select(BillingPayment.payment_ref).where(
                        BillingPayment.subscription_id == sub.id,
                        BillingPayment.status == "succeeded",
                    )
                )
            if ref is None:
                return
            self.refunded.add(sub.id)
            self.apply(kind, sub, None, payment_ref=ref, occurred_at=at)
            return
        self.apply(kind, sub, invoice, occurred_at=at, payment_method_ref="pm|cus")

    @rule()
    def provider_reports_the_open_invoice_paid(self) -> None:
        sub = self.current()
        invoice = self.open_invoice(sub) if sub is not None else None
        if sub is not None and invoice is not None:
            self.apply(EventKind.PAYMENT_SUCCEEDED, sub, invoice, payment_method_ref="pm|cus")

    @rule(hard=st.booleans())
    def provider_reports_a_failure(self, hard: bool) -> None:
        sub = self.current()
        if sub is not None:
            self.apply(EventKind.PAYMENT_FAILED, sub, self.open_invoice(sub), hard_decline=hard)

    @rule()
    def renewal_invoice(self) -> None:
        """What the renewal step will do: open the next period's invoice."""
        sub = self.current()
        if sub is None or sub.paid_through is None or self.open_invoice(sub) is not None:
            return
        now = self.world.clock.now()
        with transaction(self.world.services.ctx.write) as session:
            end = add_interval(sub.paid_through, Interval(sub.interval))
            invoice = new_invoice(
                session,
                subscription_id=sub.id,
                user_id=sub.user_id,
                currency=sub.currency,
                period_start=sub.paid_through,
                period_end=end,
                now=now,
            )
            add_line(
                session,
                invoice,
                kind="charge",
                amount_minor=sub.price_minor,
                description="renewal",
                period_start=sub.paid_through,
                period_end=end,
                plan_id=sub.plan_id,
                now=now,
            )

    # --- the clock -------------------------------------------------------------------------------

    @rule(hours=st.sampled_from([1, 6, 24 * 3, 24 * 20, 24 * 40]))
    def time_passes(self, hours: int) -> None:
        self.world.clock.advance(hours * 3600)
        self.world.billing.tick()

    def teardown(self) -> None:
        with transaction(self.world.services.ctx.read) as session:
            self.reached.update(session.scalars(select(BillingTransition.to_state).distinct()))

    # --- invariants ---------------------------------------------------------------------------

    @invariant()
    def transitions_are_legal(self) -> None:
        with transaction(self.world.services.ctx.read) as session:
            rows = session.execute(
                select(BillingTransition.from_state, BillingTransition.to_state)
                .join(
                    BillingSubscription, BillingSubscription.id == BillingTransition.subscription_id
                )
                .where(BillingSubscription.user_id == self.user)
            ).all()
        for src, dst in rows:
            assert (S(src) if src else None, S(dst)) in ALLOWED, (src, dst)

    @invariant()
    def paid_through_is_never_shortened(self) -> None:
        with transaction(self.world.services.ctx.read) as session:
            subs = list(
                session.scalars(
                    select(BillingSubscription).where(BillingSubscription.user_id == self.user)
                )
            )
        for sub in subs:
            before = self.seen.get(sub.id)
            if before is not None and sub.id not in self.refunded:
                assert sub.paid_through is not None and sub.paid_through >= before
            self.seen[sub.id] = sub.paid_through

    @invariant()
    def entitlement_follows(self) -> None:
        """The row the hot paths read lasts until the latest entitlement end over ALL the user's
        subscriptions (a canceled one paid through a later date included)."""
        now = self.world.clock.now()
        grace = timedelta(days=self.world.services.ctx.settings.billing_grace_days)
        with transaction(self.world.services.ctx.read) as session:
            row = session.scalar(select(Subscription).where(Subscription.user_id == self.user))
            subs = list(
                session.scalars(
                    select(BillingSubscription).where(BillingSubscription.user_id == self.user)
                )
            )
            entitled = entitled_now(session, self.user, now)
        until = row.entitled_until if row is not None else None
        assert entitled == (until is not None and now < until)
        ends = [end for sub in subs if (end := entitlement_end(sub, grace)) is not None]
        assert until == (max(ends) if ends else None)
        paid = [s for s in subs if s.paid_through is not None and s.paid_through > now]
        if any(s.id not in self.refunded for s in paid):
            assert entitled, "a paid period was taken away"


def test_the_state_machine_holds_under_random_histories(world: BillingWorld) -> None:
    SubscriptionMachine.world = world
    SubscriptionMachine.reached = set()
    run_state_machine_as_test(
        SubscriptionMachine,
        settings=settings(
            max_examples=40,
            stateful_step_count=25,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
    # The histories went through the machine, not around it: most states were reached.
    reached = SubscriptionMachine.reached
    assert reached >= {"incomplete", "active", "trialing", "past_due", "unpaid", "canceled"}, (
        reached
    )
