"""The inbox as a durable queue on SQLite and PostgreSQL: received order, retries with backoff on
a fake clock, dead letters, redrive (CLI, audited), leases, retention, the gauges."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from random import Random
from typing import Any

import pytest
from sqlalchemy import select, text

from server_stub.cli import main as cli_main
from server_stub.db import transaction
from server_stub.models import AuditEntry
from server_stub.services.billing.contract import ProviderName
from server_stub.services.webhooks import retry_delay
from server_stub.services.webhooks.worker import run_until
from server_stub.webhook_models import WebhookEvent
from tests.helpers.webhooks import (
    InboxApp,
    cp_form,
    cp_headers,
    inbox_app,
    stripe_event,
    stripe_headers,
)


@pytest.fixture
def hub(database_url: str, tmp_path: Path) -> Iterator[InboxApp]:
    with inbox_app(database_url, tmp_path / "data", webhook_max_attempts=3) as app:
        yield app


def send_stripe(app: InboxApp, event_id: str, created: int, kind: str = "invoice.paid") -> None:
    body = stripe_event(event_id, created, kind)
    r = app.client.post("/webhooks/stripe", content=body, headers=stripe_headers(body, app.now()))
    assert r.status_code == 200, r.text


def row(app: InboxApp, event_id: str) -> WebhookEvent:
    with transaction(app.services.ctx.read) as session:
        found = session.scalar(select(WebhookEvent).where(WebhookEvent.event_id == event_id))
    assert found is not None
    return found


def audit_actions(app: InboxApp, action: str) -> list[AuditEntry]:
    with transaction(app.services.ctx.read) as session:
        return list(
            session.scalars(
                select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.seq)
            )
        )


def test_out_of_order_events_apply_in_received_order_and_carry_their_times(
    hub: InboxApp,
) -> None:
    t = hub.now()
    send_stripe(hub, "evt_late", t - 10, "invoice.payment_failed")  # happened second, came first
    send_stripe(hub, "evt_early", t - 100, "invoice.paid")
    body = cp_form(9001, DateTime="2026-01-15 11:00:00")
    hub.client.post("/webhooks/cloudpayments/pay", content=body, headers=cp_headers(body))
    assert hub.inbox.drain() == 3
    seen = [
        (provider, payload.get("id"), payload.get("created"))
        for provider, payload in hub.applier.calls
    ]
    assert seen == [
        (ProviderName.STRIPE, "evt_late", t - 10),
        (ProviderName.STRIPE, "evt_early", t - 100),
        (ProviderName.CLOUDPAYMENTS, None, None),
    ]
    assert hub.applier.calls[2][1]["DateTime"] == "2026-01-15 11:00:00"
    assert row(hub, "evt_late").event_at > row(hub, "evt_early").event_at  # type: ignore[operator]
    for event_id in ("evt_late", "evt_early", "9001:pay"):
        done = row(hub, event_id)
        assert done.status == "applied" and done.applied_at == hub.clock.now()
        assert done.claimed_by is None and done.next_attempt_at is None


def test_an_event_billing_does_not_act_on_is_ignored(hub: InboxApp) -> None:
    hub.applier.ignore = frozenset({"customer.created"})
    send_stripe(hub, "evt_cust", hub.now(), "customer.created")
    hub.inbox.drain()
    assert row(hub, "evt_cust").status == "ignored"


def test_a_failing_apply_retries_with_backoff_then_dead_letters(hub: InboxApp) -> None:
    hub.applier.fail_next = 100
    send_stripe(hub, "evt_fail", hub.now())
    expected_waits = [timedelta(seconds=30), timedelta(seconds=120)]
    for attempt, wait in enumerate(expected_waits, start=1):
        assert hub.inbox.work_once() == 1
        failed = row(hub, "evt_fail")
        assert (failed.status, failed.attempts) == ("failed", attempt)
        assert failed.last_error == "RuntimeError: billing is down"
        assert failed.next_attempt_at is not None
        delay = failed.next_attempt_at - hub.clock.now()
        assert wait * 0.75 <= delay <= wait * 1.25  # jittered ±25 %
        # Not due a moment before its time; due at it.
        hub.clock.set(failed.next_attempt_at - timedelta(seconds=1))
        assert hub.inbox.work_once() == 0
        hub.clock.advance(1)
    assert hub.inbox.work_once() == 1
    dead = row(hub, "evt_fail")
    assert (dead.status, dead.attempts, dead.next_attempt_at) == ("dead", 3, None)
    hub.clock.advance(365 * 24 * 3600)
    assert hub.inbox.work_once() == 0  # a dead letter waits for an operator
    assert len(hub.applier.calls) == 3
    [entry] = audit_actions(hub, "webhook.dead")
    assert entry.actor == "system:webhooks" and entry.details["event_id"] == "evt_fail"
    metrics = hub.client.get("/metrics").text
    assert 'tgflow_webhooks_failed_total{provider="stripe"} 3.0' in metrics
    assert 'tgflow_webhooks_dead_total{provider="stripe"} 1.0' in metrics
    assert 'tgflow_webhooks_queue_depth{provider="stripe",state="dead"} 1.0' in metrics


def test_a_retry_that_succeeds_clears_the_error(hub: InboxApp) -> None:
    hub.applier.fail_next = 1
    send_stripe(hub, "evt_flaky", hub.now())
    hub.inbox.work_once()
    hub.clock.advance(60)
    hub.inbox.work_once()
    done = row(hub, "evt_flaky")
    assert (done.status, done.attempts, done.last_error) == ("applied", 2, None)


def test_the_retry_schedule_is_exponential_and_capped() -> None:
    class Middle(Random):
        def random(self) -> float:
            return 0.5

    waits = [retry_delay(n, Middle()).total_seconds() for n in range(1, 9)]
    assert waits == [30, 120, 480, 1920, 7680, 21600, 21600, 21600]


def test_a_lease_hides_a_claimed_event_until_it_ends(hub: InboxApp) -> None:
    send_stripe(hub, "evt_lease", hub.now())
    [claim] = hub.inbox.claim_batch()
    held = row(hub, "evt_lease")
    assert held.claimed_by == hub.inbox.worker and held.attempts == 1
    lease = hub.services.ctx.settings.webhook_lease_seconds
    hub.clock.advance(lease - 1)
    assert hub.inbox.claim_batch() == []
    hub.clock.advance(1)
    [again] = hub.inbox.claim_batch()  # the first worker is presumed dead
    assert (again.seq, again.attempt) == (claim.seq, 2)
    # The first worker was only slow: its failure does not overwrite the new claim ...
    assert hub.inbox.apply(claim).recorded is True  # ... but its committed apply counts.
    assert row(hub, "evt_lease").status == "applied"
    assert hub.inbox.apply(again).recorded is False


def test_an_event_whose_every_worker_was_lost_is_dead_lettered(hub: InboxApp) -> None:
    send_stripe(hub, "evt_poison", hub.now())
    lease = hub.services.ctx.settings.webhook_lease_seconds
    for _ in range(3):  # max attempts: claimed, never recorded (the worker died each time)
        assert len(hub.inbox.claim_batch()) == 1
        hub.clock.advance(lease)
    assert hub.inbox.claim_batch() == []
    dead = row(hub, "evt_poison")
    assert dead.status == "dead" and "lost on all 3 attempts" in (dead.last_error or "")
    assert hub.applier.calls == []


def _dead(hub: InboxApp, *event_ids: str) -> None:
    hub.applier.fail_next = 100
    for event_id in event_ids:
        send_stripe(hub, event_id, hub.now())
    for _ in range(3):
        hub.inbox.work_once()
        hub.clock.advance(7 * 24 * 3600)
    assert all(row(hub, e).status == "dead" for e in event_ids)
    hub.applier.fail_next = 0


def cli(hub: InboxApp, monkeypatch: pytest.MonkeyPatch, *argv: str) -> int:
    monkeypatch.setenv("TGFLOW_DATABASE_URL", hub.services.ctx.settings.resolved_database_url())
    monkeypatch.setenv("TGFLOW_LOG_LEVEL", "WARNING")
    return cli_main(["webhooks", *argv, "--data-dir", str(hub.services.ctx.settings.data_dir)])


def test_redrive_one_and_all_dead_letters_from_the_cli_audited(
    hub: InboxApp, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _dead(hub, "evt_d1", "evt_d2", "evt_d3")
    send_stripe(hub, "evt_ok", hub.now())
    hub.inbox.drain()
    capsys.readouterr()

    assert cli(hub, monkeypatch, "list", "--status", "dead") == 0
    listed = capsys.readouterr().out
    assert all(e in listed for e in ("evt_d1", "evt_d2", "evt_d3")) and "evt_ok" not in listed
    assert "last error: RuntimeError: billing is down" in listed

    first = row(hub, "evt_d1").seq
    assert cli(hub, monkeypatch, "redrive", str(first)) == 0
    assert "queued again" in capsys.readouterr().out
    redriven = row(hub, "evt_d1")
    assert (redriven.status, redriven.attempts) == ("queued", 0)
    assert cli(hub, monkeypatch, "redrive", str(row(hub, "evt_ok").seq)) == 2  # not dead
    assert "only a dead-lettered webhook" in capsys.readouterr().err
    assert cli(hub, monkeypatch, "redrive", "999999") == 2

    assert cli(hub, monkeypatch, "redrive", "--dead") == 0
    assert "2 dead-lettered webhooks queued again" in capsys.readouterr().out
    entries = audit_actions(hub, "webhook.redrive")
    assert len(entries) == 3 and all(e.actor.startswith("cli:") for e in entries)
    assert entries[0].object == f"webhooks/{first}"

    calls = len(hub.applier.calls)
    # The CLI runs on the system clock: a redriven event is due from the CLI's now.
    hub.clock.set(datetime.now(UTC) + timedelta(seconds=1))
    assert hub.inbox.drain() == 3  # due at once after a redrive
    assert len(hub.applier.calls) == calls + 3
    assert {row(hub, e).status for e in ("evt_d1", "evt_d2", "evt_d3")} == {"applied"}


def test_list_filters_by_provider_and_status(
    hub: InboxApp, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    send_stripe(hub, "evt_s", hub.now())
    body = cp_form(9100)
    hub.client.post("/webhooks/cloudpayments/pay", content=body, headers=cp_headers(body))
    capsys.readouterr()
    assert cli(hub, monkeypatch, "list", "--provider", "cloudpayments") == 0
    out = capsys.readouterr().out
    assert "9100:pay" in out and "evt_s" not in out
    assert cli(hub, monkeypatch, "list", "--status", "applied") == 0
    assert capsys.readouterr().out == ""


def test_retention_prunes_only_done_events_older_than_the_setting(hub: InboxApp) -> None:
    hub.applier.ignore = frozenset({"customer.created"})
    send_stripe(hub, "evt_old_applied", hub.now())
    send_stripe(hub, "evt_old_ignored", hub.now(), "customer.created")
    hub.inbox.drain()
    _dead(hub, "evt_old_dead")  # moves the clock 21 days
    hub.clock.advance(14 * 24 * 3600 + 1)  # 35 days and a second since the first ones arrived
    send_stripe(hub, "evt_new", hub.now())
    hub.inbox.drain()
    assert hub.inbox.prune() == 2
    with transaction(hub.services.ctx.read) as session:
        left = set(session.scalars(select(WebhookEvent.event_id)))
    assert left == {"evt_old_dead", "evt_new"}
    # Pruned: the provider's id is forgotten only after the dedupe window.
    assert hub.services.ctx.settings.webhook_retention_days == 35


def test_the_gauges_show_the_depth_and_the_age_of_the_oldest(hub: InboxApp) -> None:
    send_stripe(hub, "evt_g1", hub.now())
    hub.clock.advance(90)
    send_stripe(hub, "evt_g2", hub.now())
    hub.inbox.refresh_gauges()
    metrics = hub.client.get("/metrics").text
    assert 'tgflow_webhooks_queue_depth{provider="stripe",state="pending"} 2.0' in metrics
    assert 'tgflow_webhooks_oldest_pending_age_seconds{provider="stripe"} 90.0' in metrics
    hub.inbox.drain()
    metrics = hub.client.get("/metrics").text
    assert 'tgflow_webhooks_queue_depth{provider="stripe",state="pending"} 0.0' in metrics
    assert 'tgflow_webhooks_applied_total{outcome="applied",provider="stripe"} 2.0' in metrics


@pytest.mark.parametrize(
    "database_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
def test_a_claim_skips_rows_locked_by_another_worker_without_waiting(hub: InboxApp) -> None:
    for n in range(4):
        send_stripe(hub, f"evt_lock{n}", hub.now())
    locked = row(hub, "evt_lock0").seq
    engine = hub.services.ctx.engine
    with engine.connect() as other:
        other.execute(text("SET lock_timeout = '5s'"))
        # Another worker is mid-claim on the oldest row.
        other.execute(
            text("SELECT seq FROM webhook_inbox WHERE seq = :s FOR UPDATE"), {"s": locked}
        )
        claims = hub.inbox.claim_batch(limit=10)
        other.rollback()
    assert [c.seq for c in claims] == sorted(c.seq for c in claims)
    assert locked not in {c.seq for c in claims} and len(claims) == 3
    [late] = hub.inbox.claim_batch(limit=10)
    assert late.seq == locked


def test_the_worker_run_alone_applies_until_stopped(hub: InboxApp) -> None:
    send_stripe(hub, "evt_alone", hub.now())
    stop = threading.Event()
    original = hub.applier.apply

    def apply_then_stop(provider: ProviderName, payload: Mapping[str, Any]) -> bool:
        stop.set()  # the loop ends after this round
        return original(provider, payload)

    hub.applier.apply = apply_then_stop  # type: ignore[method-assign]
    run_until(hub.inbox, stop, poll_seconds=0.01)
    assert row(hub, "evt_alone").status == "applied"
