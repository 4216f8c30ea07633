"""BillingService on SQLite and PostgreSQL: checkouts, provider events, the paid-through rules
and the entitlement that follows (docs/billing.md, "Plans, subscriptions and entitlement")."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from agent.protocol import CancelWhen
from server_stub.billing_models import (
    BillingAppliedEvent,
    BillingInvoiceLine,
    BillingPayment,
    BillingTransition,
)
from server_stub.db import transaction
from server_stub.errors import AlreadyExists, NotFound, ServiceUnavailable, ValidationFailed
from server_stub.models import AuditEntry, Subscription
from server_stub.services.billing.common import Actor
from server_stub.services.billing.contract import EventKind, ProviderName, SubscriptionState
from server_stub.services.billing.events import ApplyOutcome, CheckVerdict
from server_stub.services.billing.plans import PlanChanges
from server_stub.services.billing.states import IllegalTransition
from server_stub.services.billing.subscriptions import ProviderNotConfigured
from tests.helpers.billing import (
    BillingWorld,
    ProviderRefused,
    ProviderUnavailable,
    billing_world,
)

S = SubscriptionState


@pytest.fixture
def world(database_url: str, tmp_path: Path) -> Iterator[BillingWorld]:
    with billing_world(database_url, tmp_path / "data") as w:
        yield w


def transitions(world: BillingWorld, sub_id: str) -> list[tuple[str | None, str, str]]:
    with transaction(world.services.ctx.read) as session:
        rows = session.scalars(
            select(BillingTransition)
            .where(BillingTransition.subscription_id == sub_id)
            .order_by(BillingTransition.seq)
        )
        return [(r.from_state, r.to_state, r.actor_kind) for r in rows]


def test_a_checkout_opens_an_incomplete_subscription_and_an_invoice(world: BillingWorld) -> None:
    user = world.new_user()
    sub_id, invoice_id = world.subscribe(user)
    (checkout,) = world.adapter.checkouts()
    assert checkout["invoice_id"] == invoice_id and checkout["subscription_id"] == sub_id
    assert checkout["amount_minor"] == 99_000 and checkout["currency"] == "RUB"
    assert checkout["idempotency_key"] == f"checkout-{invoice_id}"
    assert world.sub(sub_id).state == "incomplete"
    invoice = world.invoice(invoice_id)
    assert (invoice.status, invoice.total_minor, invoice.amount_due_minor) == (
        "open",
        99_000,
        99_000,
    )
    assert invoice.checkout_url and invoice.checkout_url.startswith("https://pay.example/")
    # Unpaid: nothing is entitled yet (and the user had no plan).
    assert not world.entitled(user)
    assert transitions(world, sub_id) == [(None, "incomplete", "user")]


def test_paying_activates_and_the_license_follows_until_paid_through_plus_grace(
    world: BillingWorld,
) -> None:
    user = world.new_user()
    sub_id, invoice_id = world.subscribe(user)
    world.days(1)
    paid_at = world.clock.now()
    ref = world.pay(invoice_id)
    sub = world.sub(sub_id)
    assert sub.state == "active" and sub.payment_method_ref == "pm_1|cus_1"
    # The first period starts when it was paid, not when the checkout opened.
    assert sub.current_period_start == paid_at
    assert sub.paid_through == paid_at.replace(month=paid_at.month + 1)
    assert world.invoice(invoice_id).status == "paid"
    assert world.entitled(user)
    # Renewal is another step: past paid_through the grace (3 days) still holds, then not.
    assert sub.paid_through is not None
    assert world.entitled(user, sub.paid_through + timedelta(days=2, hours=23))
    assert not world.entitled(user, sub.paid_through + timedelta(days=3))
    with transaction(world.services.ctx.read) as session:
        payment = session.scalar(select(BillingPayment).where(BillingPayment.payment_ref == ref))
        assert payment is not None and payment.amount_minor == 99_000
        entitlement = session.scalar(select(Subscription).where(Subscription.user_id == user))
        assert entitlement is not None and entitlement.plan_id == world.plan("pro").id


def test_applying_an_event_or_a_payment_twice_changes_nothing(world: BillingWorld) -> None:
    user = world.new_user()
    sub_id, invoice_id = world.subscribe(user)
    event = world.event(
        EventKind.CHECKOUT_COMPLETED, invoice_id, payment_ref="pi_x", amount_minor=99_000
    )
    assert world.billing.apply_event(event) is ApplyOutcome.APPLIED
    first = world.sub(sub_id).paid_through
    assert world.billing.apply_event(event) is ApplyOutcome.DUPLICATE
    # Same payment under another event id (the reconciler's copy of a webhook).
    world.days(1)
    again = world.event(EventKind.PAYMENT_SUCCEEDED, invoice_id, payment_ref="pi_x")
    assert world.billing.apply_event(again) is ApplyOutcome.DUPLICATE
    assert world.sub(sub_id).paid_through == first
    with transaction(world.services.ctx.read) as session:
        assert len(list(session.scalars(select(BillingPayment)))) == 1
        outcomes = sorted(r.outcome for r in session.scalars(select(BillingAppliedEvent)))
        assert outcomes == ["applied", "duplicate"]


def test_a_late_event_never_moves_the_subscription_back(world: BillingWorld) -> None:
    user = world.new_user()
    sub_id, invoice_id = world.subscribe(user)
    failed_at = world.clock.now()
    world.days(1)
    world.pay(invoice_id)
    # A failure that happened before the payment arrives after it: stored, ignored.
    late = world.event(
        EventKind.PAYMENT_FAILED, invoice_id, payment_ref="pi_late", occurred_at=failed_at
    )
    assert world.billing.apply_event(late) is ApplyOutcome.STALE
    assert world.sub(sub_id).state == "active"
    with transaction(world.services.ctx.read) as session:
        row = session.scalar(select(BillingPayment).where(BillingPayment.payment_ref == "pi_late"))
        assert row is not None and row.status == "failed"  # the fact is kept


def test_a_failed_renewal_is_past_due_with_grace_and_never_shortens_the_paid_period(
    world: BillingWorld,
) -> None:
    user = world.new_user()
    sub_id, invoice_id = world.subscribe(user, "pro-year")
    world.pay(invoice_id)
    paid_through = world.sub(sub_id).paid_through
    assert paid_through is not None
    # An early renewal attempt fails a month in (Kill Bill #1997: an overdue account loses
    # its annual period). Here the year already paid stays in force.
    world.days(30)
    failed = world.event(
        EventKind.PAYMENT_FAILED,
        None,
        subscription_id=sub_id,
        payment_ref="pi_f",
        decline_code="insufficient_funds",
    )
    assert world.billing.apply_event(failed) is ApplyOutcome.APPLIED
    sub = world.sub(sub_id)
    assert sub.state == "past_due" and sub.paid_through == paid_through
    assert sub.grace_ends_at == paid_through + timedelta(days=3)
    assert world.billing.tick() == 0  # the grace runs from the paid period's end
    assert world.entitled(user, paid_through + timedelta(days=2))
    world.clock.set(paid_through + timedelta(days=3))
    assert world.billing.tick() == 1
    sub = world.sub(sub_id)
    assert sub.state == "unpaid" and sub.paid_through == paid_through
    assert not world.entitled(user)
    assert transitions(world, sub_id)[-2:] == [
        ("active", "past_due", "provider"),
        ("past_due", "unpaid", "system"),
    ]


def test_a_payment_after_past_due_makes_it_active_again(world: BillingWorld) -> None:
    user = world.new_user()
    sub_id, invoice_id = world.subscribe(user)
    world.pay(invoice_id)
    world.billing.apply_event(
        world.event(
            EventKind.PAYMENT_FAILED,
            None,
            subscription_id=sub_id,
            hard_decline=True,
            payment_ref="pi_h",
        )
    )
    assert world.sub(sub_id).state == "past_due"
    world.days(1)
    world.billing.apply_event(
        world.event(EventKind.PAYMENT_SUCCEEDED, None, subscription_id=sub_id, payment_ref="pi_ok")
    )
    sub = world.sub(sub_id)
    assert sub.state == "active" and sub.grace_ends_at is None
    with transaction(world.services.ctx.read) as session:
        hard = session.scalar(select(BillingPayment).where(BillingPayment.payment_ref == "pi_h"))
        assert hard is not None and hard.hard_decline


def test_cancel_now_stops_renewal_but_keeps_what_was_paid(world: BillingWorld) -> None:
    user = world.new_user()
    sub_id, invoice_id = world.subscribe(user)
    world.pay(invoice_id)
    paid_through = world.sub(sub_id).paid_through
    assert paid_through is not None
    world.days(10)
    view = world.billing.cancel(Actor.user(user), user, CancelWhen.NOW)
    assert view.state is S.CANCELED and view.paid_through == paid_through
    assert view.entitled_until == paid_through  # no renewal: no grace either
    assert world.entitled(user)
    assert not world.entitled(user, paid_through)
    with pytest.raises(IllegalTransition):
        world.billing.pause(Actor.user(user), user)


def test_cancel_at_period_end_can_be_undone_and_ends_with_the_period(world: BillingWorld) -> None:
    user = world.new_user()
    sub_id, invoice_id = world.subscribe(user)
    world.pay(invoice_id)
    view = world.billing.cancel(Actor.user(user), user, CancelWhen.PERIOD_END)
    assert view.state is S.ACTIVE and view.cancel_at_period_end
    view = world.billing.resume(Actor.user(user), user)
    assert not view.cancel_at_period_end
    world.billing.cancel(Actor.user(user), user, CancelWhen.PERIOD_END)
    paid_through = world.sub(sub_id).paid_through
    assert paid_through is not None
    world.clock.set(paid_through)
    assert world.billing.tick() == 1
    assert world.sub(sub_id).state == "canceled"
    assert not world.entitled(user)


def test_pause_and_resume(world: BillingWorld) -> None:
    user = world.new_user()
    sub_id, invoice_id = world.subscribe(user)
    world.pay(invoice_id)
    view = world.billing.pause(Actor.user(user), user)
    assert view.state is S.PAUSED and view.entitled_until == view.paid_through
    with pytest.raises(IllegalTransition):
        world.billing.pause(Actor.user(user), user)
    view = world.billing.resume(Actor.user(user), user)
    assert view.state is S.ACTIVE and world.sub(sub_id).paused_at is None
    with pytest.raises(IllegalTransition):
        world.billing.resume(Actor.user(user), user)


def test_a_trial_keeps_the_card_and_is_entitled_for_its_days(world: BillingWorld) -> None:
    user = world.new_user()
    sub_id, invoice_id = world.subscribe(user, "trial-pro")
    assert world.adapter.checkouts()[-1]["amount_minor"] == 0
    world.days(2)
    start = world.clock.now()
    world.pay(invoice_id)
    sub = world.sub(sub_id)
    assert sub.state == "trialing" and sub.trial_end == start + timedelta(days=14)
    assert sub.paid_through == sub.trial_end and sub.payment_method_ref
    with transaction(world.services.ctx.read) as session:
        (line,) = session.scalars(
            select(BillingInvoiceLine).where(BillingInvoiceLine.invoice_id == invoice_id)
        )
        assert line.amount_minor == 0 and "trial" in line.description
    # One trial per account: subscribing again pays from the start.
    world.billing.cancel(Actor.user(user), user, CancelWhen.NOW)
    _, again = world.subscribe(user, "trial-pro")
    assert world.invoice(again).amount_due_minor == 49_000


def test_a_full_refund_of_the_current_period_ends_the_entitlement_now(world: BillingWorld) -> None:
    user = world.new_user()
    sub_id, invoice_id = world.subscribe(user)
    ref = world.pay(invoice_id)
    world.days(3)
    partial = world.event(
        EventKind.REFUNDED, None, subscription_id=sub_id, payment_ref=ref, amount_minor=1_000
    )
    assert world.billing.apply_event(partial) is ApplyOutcome.APPLIED
    assert world.sub(sub_id).state == "active" and world.entitled(user)
    rest = world.event(
        EventKind.REFUNDED, None, subscription_id=sub_id, payment_ref=ref, amount_minor=98_000
    )
    world.billing.apply_event(rest)
    sub = world.sub(sub_id)
    assert sub.state == "canceled" and sub.paid_through == world.clock.now()
    assert not world.entitled(user)


def test_expired_or_replaced_checkouts(world: BillingWorld) -> None:
    user = world.new_user()
    first, first_invoice = world.subscribe(user)
    second, _ = world.subscribe(user)  # a new checkout replaces the unpaid one
    assert world.sub(first).state == "incomplete_expired"
    assert world.invoice(first_invoice).status == "void"
    expired = world.event(EventKind.CHECKOUT_EXPIRED, None, subscription_id=second)
    assert world.billing.apply_event(expired) is ApplyOutcome.APPLIED
    assert world.sub(second).state == "incomplete_expired"
    third, invoice = world.subscribe(user)
    world.days(1)  # Stripe's 23 hours
    assert world.billing.tick() == 1
    assert world.sub(third).state == "incomplete_expired"
    assert world.billing.check_invoice(invoice, 99_000, "RUB") is CheckVerdict.REJECTED


def test_a_live_subscription_is_not_created_twice(world: BillingWorld) -> None:
    user = world.new_user()
    _, invoice_id = world.subscribe(user)
    world.pay(invoice_id)
    with pytest.raises(AlreadyExists):
        world.subscribe(user)
    with pytest.raises(NotFound):
        world.subscribe(world.new_user(), "no-such-plan")


def test_unconfigured_or_failing_providers_fail_closed(world: BillingWorld) -> None:
    user = world.new_user()
    with pytest.raises(ProviderNotConfigured):
        world.billing.create_subscription(user, "pro", ProviderName.CLOUDPAYMENTS)
    world.adapter.fail_with = ProviderUnavailable
    with pytest.raises(ServiceUnavailable):
        world.subscribe(user)
    world.adapter.fail_with = ProviderRefused
    with pytest.raises(ValidationFailed):
        world.subscribe(user)


def test_check_invoice(world: BillingWorld) -> None:
    user = world.new_user()
    _, invoice_id = world.subscribe(user)
    check = world.billing.check_invoice
    assert check(invoice_id, 99_000, "RUB") is CheckVerdict.OK
    assert check(invoice_id, 99_001, "RUB") is CheckVerdict.WRONG_AMOUNT
    assert check(invoice_id, 99_000, "USD") is CheckVerdict.WRONG_AMOUNT
    assert check("no-such-invoice", 99_000, "RUB") is CheckVerdict.UNKNOWN_INVOICE
    # What a provider echoes back is not trusted to be our id (a NUL is PostgreSQL's error).
    assert check("bad\x00id", 99_000, "RUB") is CheckVerdict.UNKNOWN_INVOICE
    garbled = world.event(EventKind.PAYMENT_SUCCEEDED, "x\x00", subscription_id="y\x00")
    assert world.billing.apply_event(garbled) is ApplyOutcome.IGNORED
    world.pay(invoice_id)
    assert check(invoice_id, 99_000, "RUB") is CheckVerdict.REJECTED


def test_plans_are_audited_and_retired_plans_are_not_offered(world: BillingWorld) -> None:
    plans = world.billing.plans
    plans.change("staff:1", "pro", PlanChanges(price_minor=89_000))
    user = world.new_user()
    _, invoice_id = world.subscribe(user)
    assert world.invoice(invoice_id).amount_due_minor == 89_000
    plans.retire("staff:1", "pro")
    assert "pro" not in [p.name for p in plans.list(offered_only=True)]
    with pytest.raises(NotFound):
        world.subscribe(world.new_user())
    with pytest.raises(ValidationFailed):
        plans.change("staff:1", "pro", PlanChanges(currency="rub"))
    with transaction(world.services.ctx.read) as session:
        actions = [
            e.action
            for e in session.scalars(
                select(AuditEntry)
                .where(AuditEntry.object == "billing/plan/pro")
                .order_by(AuditEntry.seq)
            )
        ]
    assert actions == ["billing.plan.create", "billing.plan.change", "billing.plan.retire"]


def test_an_operator_plan_is_untouched_by_an_unpaid_checkout(world: BillingWorld) -> None:
    # The demo's user: an operator-assigned plan, without billing (entitled_until NULL).
    world.services.plans.upsert("demo", monthly_quota=10, max_devices=1, features=[])
    user = world.services.auth.create_user("demo-billing@example.com", "password 1234", "demo")
    assert world.entitled(user.id)
    sub_id, _ = world.subscribe(user.id)
    world.billing.apply_event(world.event(EventKind.CHECKOUT_EXPIRED, None, subscription_id=sub_id))
    assert world.entitled(user.id, world.clock.now() + timedelta(days=3650))


def test_a_new_subscription_never_shortens_what_a_canceled_one_paid(world: BillingWorld) -> None:
    """A yearly plan canceled now stays paid for a year; a new subscription (a 14-day trial)
    taken after it must not cut that year short (the entitlement is the latest end over the
    user's subscriptions), while its plan is the one in force."""
    user = world.new_user()
    yearly, invoice_id = world.subscribe(user, "pro-year")
    world.pay(invoice_id)
    year_end = world.sub(yearly).paid_through
    assert year_end is not None
    world.days(1)
    world.billing.cancel(Actor.user(user), user, CancelWhen.NOW)
    world.days(1)
    newer, invoice_id = world.subscribe(user, "trial-pro")
    world.pay(invoice_id)
    newer_end = world.sub(newer).paid_through
    assert newer_end is not None and newer_end < year_end
    with transaction(world.services.ctx.read) as session:
        row = session.scalar(select(Subscription).where(Subscription.user_id == user))
        assert row is not None
        assert row.entitled_until == year_end
        assert row.plan_id == world.plan("trial-pro").id
    assert world.entitled(user, newer_end + timedelta(days=30))
    assert not world.entitled(user, year_end)
