"""BroadcastWorker end to end: the real backend over HTTP, the simulated Telegram, a fake clock."""

from __future__ import annotations

import itertools
import threading
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from agent.journal import UsageJournal
from agent.protocol import ReservationResponse, ReservationStatus
from app.antispam import AccountState, FloodPolicy
from app.broadcast import Pacing, Progress, recipient_key, reconcile
from app.broadcast_store import BroadcastState, BroadcastStore, RecipientState
from app.core import LicenseUnusable
from app.transports.base import FloodWait, PeerFlood
from server_stub.models import TelemetryEvent
from tests.helpers.broadcast import RECIPIENTS, Recorder, run, start
from tests.helpers.desktop import Desktop, quota_used

STEADY = Pacing(min_delay_sec=5, max_delay_sec=5, batch_size=50)


def test_200_recipients_with_a_flood_wait_pause_exactly_and_count_exactly(
    desktop: Desktop,
) -> None:
    desktop.make_core(pacing=STEADY)
    account_id, broadcast_id = start(desktop)
    desktop.network.script(account_id, FloodWait(42), at=70)

    recorder = Recorder()
    final = run(desktop, broadcast_id, recorder)

    assert final.state is BroadcastState.FINISHED
    assert (final.counts.sent, final.counts.failed, final.counts.pending) == (200, 0, 0)
    sent = desktop.network.sent
    assert [m.recipient for m in sent] == RECIPIENTS  # each once, in order, after the wait
    # The 70th attempt met the FloodWait: the 70th message went out exactly 42 s later than
    # it would have, and nothing was sent in between.
    gaps = [(b.at - a.at).total_seconds() for a, b in itertools.pairwise(sent)]
    assert gaps[68] == 5 + 42
    assert set(gaps[:68] + gaps[69:]) == {5.0}
    assert 42.0 in desktop.clock.sleeps
    assert any(kind == "flood_wait" for kind, _m in recorder.notices)
    assert any(p.state is BroadcastState.WAITING for p in recorder.progress_events)
    assert quota_used(desktop.backend) == (200, 0)
    assert final.quota_left == 1000 - 200


def test_peer_flood_cools_down_with_backoff_then_excludes_the_account(
    desktop: Desktop,
) -> None:
    desktop.make_core(pacing=STEADY, policy=FloodPolicy(max_consecutive_errors=3, cooldown_sec=300))
    account_id, broadcast_id = start(desktop)
    for attempt in (11, 12, 13):
        desktop.network.script(account_id, PeerFlood(), at=attempt)

    recorder = Recorder()
    final = run(desktop, broadcast_id, recorder)

    assert final.state is BroadcastState.STOPPED
    assert "@SpamBot" in final.detail
    assert (final.counts.sent, final.counts.pending) == (10, 190)
    # Cooldown 300 s, then 600 s (doubled), then Excluded: no third wait.
    assert [s for s in desktop.clock.sleeps if s >= 300] == [300.0, 600.0]
    core = desktop.core
    assert core is not None
    status = desktop.call(lambda: core.antispam.status(account_id))
    assert status.state is AccountState.EXCLUDED
    assert sum(1 for kind, _m in recorder.notices if kind == "peer_flood") == 3
    # The rest of the list went nowhere: every message sent is one of the first ten.
    assert [m.recipient for m in desktop.network.sent] == RECIPIENTS[:10]
    assert quota_used(desktop.backend) == (10, 0)

    # An excluded account does not send until the user restores it.
    blocked = run(desktop, broadcast_id, Recorder())
    assert blocked.state is BroadcastState.STOPPED
    assert "excluded" in blocked.detail
    assert len(desktop.network.sent) == 10
    desktop.call(lambda: core.restore_account(account_id))
    resumed = run(desktop, broadcast_id, Recorder())
    assert resumed.state is BroadcastState.FINISHED
    assert quota_used(desktop.backend) == (200, 0)


def test_stop_rolls_back_what_was_not_sent_and_the_broadcast_resumes(desktop: Desktop) -> None:
    desktop.make_core(pacing=STEADY)
    _account_id, broadcast_id = start(desktop)
    core = desktop.core
    assert core is not None

    recorder = Recorder()
    recorder.on_sent = lambda n: core.stop_broadcast(broadcast_id) if n == 25 else None
    stopped = run(desktop, broadcast_id, recorder)

    assert stopped.state is BroadcastState.STOPPED
    assert (stopped.counts.sent, stopped.counts.pending) == (25, 175)
    assert quota_used(desktop.backend) == (25, 0)  # the other 25 of the batch were released

    finished = run(desktop, broadcast_id, Recorder())
    assert finished.state is BroadcastState.FINISHED
    assert Counter(m.recipient for m in desktop.network.sent) == Counter(RECIPIENTS)
    assert quota_used(desktop.backend) == (200, 0)


def test_pause_settles_the_batch_and_resume_goes_on(desktop: Desktop) -> None:
    desktop.make_core(pacing=STEADY)
    _account_id, broadcast_id = start(desktop, RECIPIENTS[:60])
    core = desktop.core
    assert core is not None
    paused = threading.Event()

    def on_progress(n: int) -> None:
        if n == 20:
            core.pause_broadcast(broadcast_id)

    recorder = Recorder()
    recorder.on_sent = on_progress
    original = recorder.progress

    def progress(p: Progress) -> None:
        original(p)
        if p.state is BroadcastState.PAUSED and not paused.is_set():
            paused.set()
            # Paused: the batch is settled, nothing held on the server.
            assert p.counts.sent == 20
            core.resume_broadcast(broadcast_id)

    recorder.progress = progress  # type: ignore[method-assign]
    final = run(desktop, broadcast_id, recorder)
    assert paused.is_set()
    assert final.state is BroadcastState.FINISHED
    assert quota_used(desktop.backend) == (60, 0)


def test_unreachable_recipients_fail_without_using_quota(desktop: Desktop) -> None:
    recipients = ["@alice_opted", "@unknown_user1", "@bob_opted"]
    _account_id, broadcast_id = start(desktop, recipients)
    final = run(desktop, broadcast_id, Recorder())
    assert (final.counts.sent, final.counts.failed) == (2, 1)
    core = desktop.core
    assert core is not None
    rows = desktop.call(lambda: core.recipients(broadcast_id))
    failed = [r for r in rows if r.state is RecipientState.FAILED]
    assert [r.recipient for r in failed] == ["@unknown_user1"]
    assert failed[0].detail
    assert quota_used(desktop.backend) == (2, 0)


def test_the_quota_limits_the_broadcast_and_an_empty_quota_refuses_to_start(
    desktop: Desktop,
) -> None:
    services = desktop.backend.services
    services.plans.upsert("tiny", monthly_quota=5, max_devices=3, features=["broadcast"])
    services.auth.create_user("tiny@example.com", "tiny-password", "tiny")
    core = desktop.core
    assert core is not None
    desktop.run(core.sign_in("tiny@example.com", "tiny-password"))
    account = desktop.add_account()
    broadcast_id = desktop.call(
        lambda: core.create_broadcast(account.account_id, "Hello", RECIPIENTS[:8])
    )

    final = run(desktop, broadcast_id, Recorder())
    assert final.state is BroadcastState.STOPPED
    assert "quota" in final.detail
    assert (final.counts.sent, final.counts.pending) == (5, 3)
    assert quota_used(desktop.backend, "tiny@example.com", "tiny-password") == (5, 0)

    with pytest.raises(LicenseUnusable, match="quota"):
        run(desktop, broadcast_id, Recorder())
    assert len(desktop.network.sent) == 5


def test_telemetry_when_enabled_reports_counts_and_nothing_personal(desktop: Desktop) -> None:
    desktop.make_core(pacing=STEADY, telemetry=True)
    _account_id, broadcast_id = start(desktop, RECIPIENTS[:12])
    run(desktop, broadcast_id, Recorder())

    with desktop.backend.services.ctx.read() as session:
        rows = session.scalars(select(TelemetryEvent)).all()
        events = {row.name: dict(row.properties) for row in rows}
    assert events["broadcast.ended"] == {
        "state": "finished",
        "sent": 12,
        "failed": 0,
        "pending": 0,
    }
    stored = repr(sorted(events.items()))
    assert "opted_in" not in stored and "Hello" not in stored
    assert "15550000001" not in stored


def test_telemetry_is_off_by_default_and_sends_nothing(desktop: Desktop) -> None:
    _account_id, broadcast_id = start(desktop, RECIPIENTS[:3])
    run(desktop, broadcast_id, Recorder())
    with desktop.backend.services.ctx.read() as session:
        assert session.scalars(select(TelemetryEvent)).all() == []


def test_reconcile_marks_what_the_journal_recorded_but_the_store_missed(tmp_path: Path) -> None:
    store = BroadcastStore(tmp_path / "broadcasts.sqlite")
    journal = UsageJournal(tmp_path / "journal.sqlite")
    try:
        broadcast_id = store.create("15550000001", "hi", ["@a_user1", "@b_user2", "@c_user3"])
        cid = journal.begin(3)
        journal.record_reserved(
            cid,
            ReservationResponse(
                reservation_id="r-1",
                messages=3,
                expires_at=datetime.now(UTC) + timedelta(minutes=15),
                remaining=10,
                status=ReservationStatus.HELD,
            ),
        )
        journal.record_sent(cid, recipient_key(broadcast_id, "@a_user1"))
        store.mark(broadcast_id, "@a_user1", RecipientState.SENT)
        journal.record_sent(cid, recipient_key(broadcast_id, "@b_user2"))
        # ...the process died here, before the store heard of @b_user2.

        assert reconcile(store, journal, journal.entries(open_only=True)) == 1
        assert store.pending(broadcast_id) == ["@c_user3"]
        assert reconcile(store, journal, journal.entries(open_only=True)) == 0
    finally:
        journal.close()
        store.close()
