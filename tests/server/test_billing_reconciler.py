"""The reconciler: a paid checkout whose webhook was lost is repaired from the provider's truth
through the same idempotent path; a second run repairs nothing; a provider that is down is
reported and nothing of it changes. Real Stripe SDK against the fake Stripe, and CloudPayments;
SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest

from server_stub import cli
from server_stub.services.staff import Role
from tests.helpers.billing_shop import Shop


def test_a_lost_stripe_webhook_is_repaired_once(shop: Shop) -> None:
    token, _created = shop.subscribe("stripe")
    shop.fakes.stripe.drop_webhooks = True
    shop.pay_stripe()
    assert shop.services.webhooks.drain() == 0
    assert shop.subscription(token)["state"] == "incomplete"
    assert shop.license(token)["plan"] != "pro"

    report = shop.services.billing.reconcile()
    assert report.failed == {}
    assert report.repaired >= 1 and report.checked >= report.repaired
    assert shop.subscription(token)["state"] == "active"
    lic = shop.license(token)
    assert (lic["plan"], lic["status"]) == ("pro", "active")

    again = shop.services.billing.reconcile()
    assert again.repaired == 0 and again.failed == {}
    assert again.checked >= 1  # Stripe still lists the undelivered events


def test_a_lost_cloudpayments_notification_is_repaired_from_the_invoice(shop: Shop) -> None:
    token, _created = shop.subscribe("cloudpayments")
    shop.fakes.cloudpayments.drop_notifications = True
    shop.pay_cloudpayments()
    assert shop.subscription(token)["state"] == "incomplete"

    report = shop.services.billing.reconcile()
    assert report.repaired >= 1 and report.failed == {}
    assert shop.license(token)["plan"] == "pro"
    assert shop.services.billing.reconcile().repaired == 0


def test_a_provider_down_is_reported_and_nothing_changes(shop: Shop) -> None:
    token, _created = shop.subscribe("stripe")
    shop.fakes.stripe.drop_webhooks = True
    shop.pay_stripe()
    shop.fakes.stripe.fail_next(50, status=503)
    report = shop.services.billing.reconcile()
    assert "stripe" in report.failed and report.repaired == 0
    assert shop.subscription(token)["state"] == "incomplete"


def test_reconcile_and_refund_from_the_command_line(
    shop: Shop, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    token, created = shop.subscribe("stripe")
    shop.fakes.stripe.drop_webhooks = True
    shop.pay_stripe()
    settings = shop.services.ctx.settings
    common = ["--data-dir", str(settings.data_dir)]
    env_url = settings.resolved_database_url()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TGFLOW_DATABASE_URL", env_url)
        for key, value in shop.fakes.settings.items():
            mp.setenv(f"TGFLOW_{key.upper()}", str(value))
        assert cli.main(["billing", "reconcile", *common]) == 0
        assert "repaired" in capsys.readouterr().out
        assert shop.subscription(token)["state"] == "active"

        admin = shop.staff(Role.ADMIN)
        r = shop.client.get(
            "/staff/billing/payments",
            params={"subscription": created["subscription"]["id"]},
            headers=admin.headers,
        )
        (payment,) = r.json()["payments"]
        assert cli.main(["billing", "refund", payment["id"], "--amount", "1000", *common]) == 0
        out = capsys.readouterr().out
        assert "1000 of 99000" in out
        assert cli.main(["billing", "refund", payment["id"], "--amount", "99000", *common]) == 2
        assert "not yet refunded" in capsys.readouterr().err
