"""Renewals and dunning on SQLite and PostgreSQL with a fake clock (docs/billing.md, "Renewals
and dunning"): anchored renewals, the retry schedule, hard declines, the grace, and that what was
paid is never taken away."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from agent.protocol import CancelWhen
from server_stub.billing_models import BillingPayment
from server_stub.cli import main as cli_main
from server_stub.db import transaction
from server_stub.models import User
from server_stub.portal_models import Notification
from server_stub.services.billing.common import Actor
from server_stub.services.billing.contract import EventKind, ProviderUnavailable
from server_stub.services.billing.events import ApplyOutcome
from server_stub.services.billing.renewals import DunningOutcome
from tests.helpers.billing import BillingWorld, billing_world
from tests.helpers.fake_channels import FakeSmtpServer

JAN31 = datetime(2028, 1, 31, 10, 0, tzinfo=UTC)  # 2028 is a leap year: Feb 29


@pytest.fixture
def world(database_url: str, tmp_path: Path) -> Iterator[BillingWorld]:
    with billing_world(database_url, tmp_path / "data") as w:
        w.clock.set(JAN31)
        yield w


def _subscribed(world: BillingWorld, plan: str = "pro") -> tuple[str, str]:
    user = world.new_user()
    sub_id, invoice_id = world.subscribe(user, plan)
    world.pay(invoice_id)
    return user, sub_id


def _paid_once(world: BillingWorld) -> tuple[str, str, datetime]:
    """A subscription paid for its first period: user, subscription, ``paid_through``."""
    user, sub_id = _subscribed(world)
    paid = world.sub(sub_id).paid_through
    assert paid is not None
    return user, sub_id, paid


def _dunning_count(world: BillingWorld, outcome: str) -> float:
    metric = world.services.ctx.metrics.billing_dunning.labels("stripe", outcome)
    return float(metric._value.get())


def test_renewals_extend_to_the_anchored_boundary_and_never_drift(world: BillingWorld) -> None:
    _, sub_id = _subscribed(world)
    assert world.sub(sub_id).paid_through == datetime(2028, 2, 29, 10, 0, tzinfo=UTC)
    assert world.billing.renew_due() == {}  # nothing due yet
    world.clock.set(datetime(2028, 2, 29, 10, 0, tzinfo=UTC))
    assert world.billing.renew_due() == {DunningOutcome.RENEWED: 1}
    sub = world.sub(sub_id)
    assert sub.paid_through == datetime(2028, 3, 31, 10, 0, tzinfo=UTC)  # not Mar 29
    assert sub.state == "active" and sub.next_charge_at == sub.paid_through
    world.clock.set(datetime(2028, 3, 31, 10, 0, tzinfo=UTC))
    world.billing.renew_due()
    world.clock.set(datetime(2028, 4, 30, 10, 0, tzinfo=UTC))
    world.billing.renew_due()
    assert world.sub(sub_id).paid_through == datetime(2028, 5, 31, 10, 0, tzinfo=UTC)
    charges = world.adapter.charges()
    assert len(charges) == 3
    assert all(c["amount_minor"] == 99_000 and c["payment_method_ref"] for c in charges)
    assert [c["idempotency_key"] for c in charges] == [
        f"renewal-{c['invoice_id']}-0" for c in charges
    ]
    # The MRR gauge counts the active monthly subscription at its price.
    assert world.services.ctx.metrics.billing_mrr.labels("RUB")._value.get() == 99_000


def test_a_repeated_pass_never_charges_twice_and_the_late_webhook_changes_nothing(
    world: BillingWorld,
) -> None:
    _, sub_id = _subscribed(world)
    world.clock.set(world.sub(sub_id).next_charge_at)  # type: ignore[arg-type]
    before = _dunning_count(world, "renewed")
    world.billing.renew_due()
    paid = world.sub(sub_id).paid_through
    assert world.billing.renew_due() == {}
    assert len(world.adapter.charges()) == 1
    assert _dunning_count(world, "renewed") == before + 1
    charge = world.adapter.charges()[0]
    ref = world.adapter.answered[charge["idempotency_key"]].payment_ref
    webhook = world.event(
        EventKind.PAYMENT_SUCCEEDED,
        charge["invoice_id"],
        payment_ref=ref,
        amount_minor=99_000,
        currency="RUB",
    )
    assert world.billing.apply_event(webhook) is ApplyOutcome.DUPLICATE
    assert world.sub(sub_id).paid_through == paid
    with transaction(world.services.ctx.read) as session:
        payments = session.scalars(
            select(BillingPayment).where(BillingPayment.payment_ref == ref)
        ).all()
        assert len(payments) == 1 and payments[0].status == "succeeded"


def test_soft_declines_are_retried_on_schedule_then_end_after_the_grace(
    world: BillingWorld,
) -> None:
    user, sub_id, paid = _paid_once(world)
    world.adapter.decline(5)
    world.clock.set(paid)
    assert world.billing.renew_due() == {DunningOutcome.RETRY_SCHEDULED: 1}
    seen = []
    for day in (1, 3, 5, 7):
        sub = world.sub(sub_id)
        assert sub.state == "past_due" and sub.paid_through == paid
        assert sub.next_charge_at == paid + timedelta(days=day)
        world.clock.set(paid + timedelta(days=day) - timedelta(seconds=1))
        assert world.billing.renew_due() == {}  # not before its time
        assert world.entitled(user)  # access lasts while dunning may still pay
        world.clock.set(paid + timedelta(days=day))
        seen.append(world.billing.renew_due())
    assert seen[-1] == {DunningOutcome.RETRIES_SPENT: 1}
    charges = world.adapter.charges()
    assert len(charges) == 5 and len({c["invoice_id"] for c in charges}) == 1
    assert [c["idempotency_key"][-2:] for c in charges] == ["-0", "-1", "-2", "-3", "-4"]
    sub = world.sub(sub_id)
    assert sub.next_charge_at is None and sub.state == "past_due"
    assert sub.grace_ends_at == paid + timedelta(days=7 + 3)  # the grace from the last failure
    world.clock.set(paid + timedelta(days=10))
    ended = _dunning_count(world, "ended")
    world.billing.renew_due()
    sub = world.sub(sub_id)
    assert sub.state == "unpaid" and sub.paid_through == paid
    assert not world.entitled(user)
    assert _dunning_count(world, "ended") == ended + 1
    assert len(world.adapter.charges()) == 5


def test_a_retry_that_pays_renews_from_the_paid_period_not_from_the_retry(
    world: BillingWorld,
) -> None:
    _, sub_id, paid = _paid_once(world)
    world.adapter.decline(1)
    world.clock.set(paid)
    world.billing.renew_due()
    world.clock.set(paid + timedelta(days=1))
    assert world.billing.renew_due() == {DunningOutcome.RENEWED: 1}
    sub = world.sub(sub_id)
    assert sub.state == "active" and sub.grace_ends_at is None
    assert sub.paid_through == datetime(2028, 3, 31, 10, 0, tzinfo=UTC)


def test_a_hard_decline_is_never_retried(world: BillingWorld) -> None:
    user, sub_id, paid = _paid_once(world)
    world.adapter.decline(1, code="stolen_card")  # classified hard though the flag is not set
    world.clock.set(paid)
    assert world.billing.renew_due() == {DunningOutcome.HARD_DECLINED: 1}
    sub = world.sub(sub_id)
    assert sub.state == "past_due" and sub.next_charge_at is None and sub.paid_through == paid
    for day in range(1, 15):
        world.clock.set(paid + timedelta(days=day))
        world.billing.renew_due()
        assert world.sub(sub_id).paid_through == paid
    assert len(world.adapter.charges()) == 1
    assert world.sub(sub_id).state == "unpaid" and not world.entitled(user)


def test_an_unavailable_provider_changes_nothing_and_the_next_pass_charges(
    world: BillingWorld,
) -> None:
    _, sub_id, paid = _paid_once(world)
    world.clock.set(paid)
    world.adapter.fail_with = ProviderUnavailable
    assert world.billing.renew_due() == {}
    sub = world.sub(sub_id)
    assert sub.state == "active" and sub.paid_through == paid and sub.next_charge_at == paid
    assert world.billing.renew_due() == {DunningOutcome.RENEWED: 1}
    keys = [c["idempotency_key"] for c in world.adapter.charges()]
    assert len(keys) == 2 and keys[0] == keys[1]  # the same invoice, the same key


def test_cancel_at_period_end_ends_at_the_boundary_without_a_charge(world: BillingWorld) -> None:
    user, sub_id, paid = _paid_once(world)
    world.billing.cancel(Actor.user(user), user, CancelWhen.PERIOD_END)
    world.clock.set(paid - timedelta(seconds=1))
    world.billing.renew_due()
    assert world.sub(sub_id).state == "active" and world.entitled(user)
    world.clock.set(paid)
    world.billing.renew_due()
    assert world.sub(sub_id).state == "canceled" and world.sub(sub_id).paid_through == paid
    assert world.adapter.charges() == []
    assert not world.entitled(user)


def test_a_trial_converts_at_its_end_by_charging_the_first_period(world: BillingWorld) -> None:
    user = world.new_user()
    sub_id, invoice_id = world.subscribe(user, "trial-pro")
    world.pay(invoice_id)
    sub = world.sub(sub_id)
    assert sub.state == "trialing"
    trial_end = sub.paid_through
    assert trial_end == JAN31 + timedelta(days=14)
    world.clock.set(trial_end)
    assert world.billing.renew_due() == {DunningOutcome.RENEWED: 1}
    sub = world.sub(sub_id)
    assert sub.state == "active"
    assert sub.paid_through == datetime(2028, 3, 14, 10, 0, tzinfo=UTC)
    assert world.adapter.charges()[0]["amount_minor"] == 49_000
    # The next renewal is anchored on the trial's end.
    world.clock.set(sub.paid_through)
    world.billing.renew_due()
    assert world.sub(sub_id).paid_through == datetime(2028, 4, 14, 10, 0, tzinfo=UTC)


def test_a_yearly_subscription_counts_a_twelfth_in_the_mrr(world: BillingWorld) -> None:
    _subscribed(world, "pro-year")
    world.billing.renew_due()
    gauge = world.services.ctx.metrics.billing_mrr.labels("RUB")
    assert gauge._value.get() == 990_000 // 12


def test_each_dunning_step_is_an_email_to_the_customer_in_the_outbox(
    database_url: str, tmp_path: Path
) -> None:
    with (
        FakeSmtpServer() as smtp,
        billing_world(
            database_url,
            tmp_path / "data",
            notify_smtp_host="127.0.0.1",
            notify_smtp_port=smtp.port,
            notify_smtp_starttls=False,
            notify_smtp_from="billing@vendor.example",
        ) as world,
    ):
        world.clock.set(JAN31)
        user, sub_id = _subscribed(world)
        paid = world.sub(sub_id).paid_through
        assert paid is not None
        world.clock.set(paid)
        world.billing.renew_due()  # renewed
        paid = world.sub(sub_id).paid_through
        assert paid is not None
        world.adapter.decline(2)
        world.adapter.decline(1, code="stolen_card")
        world.clock.set(paid)
        world.billing.renew_due()  # failed, retry on day 1
        world.clock.set(paid + timedelta(days=1))
        world.billing.renew_due()  # failed, retry on day 3
        world.clock.set(paid + timedelta(days=3))
        world.billing.renew_due()  # hard: final notice
        world.billing.renew_due()  # nothing more
        world.clock.set(paid + timedelta(days=6))
        world.billing.renew_due()  # the grace is over: ended
        with transaction(world.services.ctx.read) as session:
            rows = session.scalars(select(Notification).order_by(Notification.seq)).all()
            kinds = [row.kind for row in rows]
            assert {row.payload["to"] for row in rows} == {_email(world, user)}
        assert kinds == [
            "billing_renewed",
            "billing_renewal_failed",
            "billing_renewal_failed",
            "billing_final_notice",
            "billing_ended",
        ]
        assert world.services.notifications.deliver_due() == 5
        assert [mail.rcpt_to for mail in smtp.mails] == [[_email(world, user)]] * 5
        texts = [mail.message.get_content() for mail in smtp.mails]
        assert "990.00 RUB" in texts[0] and "2028" in texts[0]
        assert "Следующая попытка" in texts[1] or "next attempt" in texts[1]
        assert world.sub(sub_id).paid_through == paid  # ended, the paid period kept


def _email(world: BillingWorld, user_id: str) -> str:
    with transaction(world.services.ctx.read) as session:
        user = session.get(User, user_id)
        assert user is not None
        return user.email


def test_the_cli_runs_one_pass(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = str(tmp_path / "d")
    assert cli_main(["billing", "renew", "--data-dir", data]) == 0
    assert capsys.readouterr().out.strip() == "billing renew: nothing was due"
