"""License-file mode in the core: activation, restart, the local monthly messages counter."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agent.clock import FakeClock
from agent.errors import IdempotencyConflict, QuotaExceeded, ReservationConflict
from agent.protocol import LicenseLimits, ReservationStatus
from app.broadcast_store import BroadcastState
from app.core import LicenseUnusable
from app.license_file import LicenseFileRefused
from app.license_usage import LocalUsage
from tests.helpers.broadcast import Recorder
from tests.helpers.desktop import Desktop
from tests.helpers.desktop_license import KEY, TERMS, write_license

RECIPIENTS = [f"@reader_{i:03d}" for i in range(8)]


def _usage(tmp_path: Path, clock: FakeClock, limit: int | None = 5) -> LocalUsage:
    return LocalUsage(tmp_path / "usage.sqlite", clock, lambda: (KEY, limit))


def test_local_usage_reserves_commits_and_rolls_back_like_the_server(tmp_path: Path) -> None:
    clock = FakeClock(datetime(2026, 3, 31, 23, 0, tzinfo=UTC))
    usage = _usage(tmp_path, clock)
    held = asyncio.run(usage.reserve(3, "c-1"))
    assert held.status is ReservationStatus.HELD and held.remaining == 2
    # The same correlation id replays the same hold; another size is a conflict.
    assert asyncio.run(usage.reserve(3, "c-1")).reservation_id == held.reservation_id
    with pytest.raises(IdempotencyConflict):
        asyncio.run(usage.reserve(2, "c-1"))
    with pytest.raises(QuotaExceeded):
        asyncio.run(usage.reserve(3, "c-2"))  # 3 held of 5: only 2 left
    done = asyncio.run(usage.commit(held.reservation_id, 2))
    assert (done.status, done.used, done.remaining) == (ReservationStatus.COMMITTED, 2, 3)
    # Repeated with the same count: the same answer, counted once.
    assert asyncio.run(usage.commit(held.reservation_id, 2)).used == 2
    with pytest.raises(ReservationConflict):
        asyncio.run(usage.commit(held.reservation_id, 3))
    with pytest.raises(ReservationConflict):
        asyncio.run(usage.rollback(held.reservation_id))
    other = asyncio.run(usage.reserve(3, "c-3"))
    assert asyncio.run(usage.rollback(other.reservation_id)).status is ReservationStatus.ROLLED_BACK
    assert usage.used(KEY) == (2, 0)
    usage.close()
    # Persistent; and the month rolls over by the clock.
    again = _usage(tmp_path, clock)
    assert again.used(KEY) == (2, 0)
    clock.advance(3600)  # 1 April
    assert again.used(KEY) == (0, 0)
    assert asyncio.run(again.reserve(5, "c-4")).remaining == 0
    again.close()


def test_no_messages_limit_reserves_any_amount(tmp_path: Path) -> None:
    usage = _usage(tmp_path, FakeClock(datetime(2026, 3, 1, tzinfo=UTC)), limit=None)
    assert asyncio.run(usage.reserve(1000, "c-1")).status is ReservationStatus.HELD
    usage.close()


def _activate(desktop: Desktop, tmp_path: Path, **changes: object) -> None:
    core = desktop.core
    assert core is not None
    path = write_license(tmp_path / "file.lic", desktop.backend, desktop.clock.now(), **changes)
    desktop.run(core.activate_license_file(path, KEY))


def test_a_file_with_five_messages_stops_the_broadcast_after_five_even_after_restart(
    desktop: Desktop, tmp_path: Path
) -> None:
    core = desktop.core
    assert core is not None
    _activate(desktop, tmp_path)
    assert core.file_mode and not core.signed_in
    account = desktop.add_account()
    broadcast_id = desktop.call(lambda: core.create_broadcast(account.account_id, "Hi", RECIPIENTS))
    final = desktop.run(core.run_broadcast(broadcast_id, Recorder()))
    assert final.counts.sent == 5
    assert final.state is BroadcastState.STOPPED
    assert final.detail is not None and "quota exhausted" in final.detail
    snapshot = desktop.run(core.license_snapshot())
    assert (snapshot.used, snapshot.held, snapshot.remaining, snapshot.usable) == (5, 0, 0, False)
    assert snapshot.reason is not None and snapshot.reason.key == "license.reason.quota_month"

    # A restart: the kept file is verified again and the count is still 5.
    desktop.close_core()
    core = desktop.make_core()
    resumed = desktop.run(core.resume_session())
    assert resumed is not None and resumed.license_file is not None
    assert core.file_mode
    assert (resumed.used, resumed.remaining) == (5, 0)
    with pytest.raises(LicenseUnusable):
        desktop.run(core.run_broadcast(broadcast_id, Recorder()))

    # Next month the count starts again.
    now = desktop.clock.now()
    first = (now.replace(day=1) + timedelta(days=32)).replace(day=1, hour=1)
    desktop.clock.set(first)
    final = desktop.run(core.run_broadcast(broadcast_id, Recorder()))
    assert final.counts.sent == 8 and final.state is BroadcastState.FINISHED
    assert desktop.run(core.license_snapshot()).used == 3


def test_a_crash_mid_batch_is_settled_from_the_journal_at_the_next_start(
    desktop: Desktop, tmp_path: Path
) -> None:
    core = desktop.core
    assert core is not None
    _activate(desktop, tmp_path)
    files = core.license_files
    # A batch left open by a crash: 4 held, 2 recorded as sent.
    entry = desktop.run(files.journal.reserve(files.usage, 4))
    files.journal.record_sent(entry.correlation_id, "bcast:x:@a")
    files.journal.record_sent(entry.correlation_id, "bcast:x:@b")
    assert desktop.run(core.license_snapshot()).held == 4
    desktop.close_core()
    core = desktop.make_core()
    snapshot = desktop.run(core.resume_session())
    assert snapshot is not None
    # Counted once: the two sends, nothing held.
    assert (snapshot.used, snapshot.held, snapshot.remaining) == (2, 0, 3)


def test_unlimited_messages_and_the_modules_gate_accounts(desktop: Desktop, tmp_path: Path) -> None:
    core = desktop.core
    assert core is not None
    limits = LicenseLimits(users=None, departments=None, integrations=None, api_rate=None)
    _activate(desktop, tmp_path, modules=("ai_forecast",), limits=limits)
    snapshot = desktop.run(core.license_snapshot())
    assert snapshot.usable and snapshot.messages_unlimited
    assert snapshot.license_file is not None
    assert dict(snapshot.license_file.limits) == dict.fromkeys(
        ("users", "departments", "integrations", "api_rate", "messages")
    )
    assert snapshot.license_file.key_tail == "…" + KEY[-4:]
    assert not core.has_module("marketplace")
    desktop.add_account()
    # Without the multi_account module, one Telegram account only.
    with pytest.raises(LicenseUnusable) as refused:
        desktop.run(core.add_account_start("+15550000002"))
    assert refused.value.key == "license.reason.module_multi_account"


def test_deactivate_forgets_the_file_and_the_next_start_asks_to_sign_in(
    desktop: Desktop, tmp_path: Path
) -> None:
    core = desktop.core
    assert core is not None
    _activate(desktop, tmp_path)
    desktop.run(core.deactivate_license_file())
    assert not core.file_mode and not core.license_files.kept
    desktop.close_core()
    core = desktop.make_core()
    assert desktop.run(core.resume_session()) is None


def test_an_expired_kept_file_is_refused_at_start_with_its_reason(
    desktop: Desktop, tmp_path: Path
) -> None:
    _activate(desktop, tmp_path)
    desktop.close_core()
    desktop.clock.advance((365 + 15) * 86400)
    core = desktop.make_core()
    with pytest.raises(LicenseFileRefused) as refused:
        desktop.run(core.resume_session())
    assert refused.value.key == "license_file.refused.expired"
    assert TERMS.grace == timedelta(days=14)
