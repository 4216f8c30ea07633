"""The account state machine, on a fake clock: every transition, persistence, waiting."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from app.antispam import AccountState, AccountStatus, AntiSpamWorker, FloodPolicy
from app.clock import FakeAsyncClock

START = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
ACC = "79990000001"


@pytest.fixture
def clock() -> FakeAsyncClock:
    return FakeAsyncClock(START)


@pytest.fixture
def state_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "account-states.json"


def make(
    clock: FakeAsyncClock, state_path: Path, **policy: int | bool
) -> tuple[AntiSpamWorker, list[AccountStatus]]:
    worker = AntiSpamWorker(FloodPolicy(**policy), state_path, clock)  # type: ignore[arg-type]
    seen: list[AccountStatus] = []
    worker.subscribe(seen.append)
    return worker, seen


def test_unknown_account_is_active(clock: FakeAsyncClock, state_path: Path) -> None:
    worker, seen = make(clock, state_path)
    status = worker.status(ACC)
    assert status == AccountStatus(ACC, AccountState.ACTIVE, None, 0, "")
    assert status.usable
    assert worker.statuses() == []
    assert seen == []


def test_flood_wait_cools_down_exactly_as_long_as_asked(
    clock: FakeAsyncClock, state_path: Path
) -> None:
    worker, seen = make(clock, state_path)
    status = worker.on_flood_wait(ACC, 42)
    assert status.state is AccountState.COOLDOWN
    assert status.until == START + timedelta(seconds=42)
    assert status.reason == "FloodWait 42 s"
    assert status.errors == 0
    assert not status.usable
    assert seen == [status]

    clock.advance(41.9)
    assert worker.status(ACC).state is AccountState.COOLDOWN
    clock.advance(0.1)
    after = worker.status(ACC)
    assert after.state is AccountState.ACTIVE
    assert after.until is None and after.reason == ""
    assert seen[-1] == after


def test_flood_wait_keeps_errors_and_never_shortens_a_longer_cooldown(
    clock: FakeAsyncClock, state_path: Path
) -> None:
    worker, _ = make(clock, state_path)
    first = worker.on_timeout(ACC)  # 300 s backoff, one error
    assert first.until == START + timedelta(seconds=300)
    shorter = worker.on_flood_wait(ACC, 10)
    assert shorter == first
    longer = worker.on_flood_wait(ACC, 1000)
    assert longer.until == START + timedelta(seconds=1000)
    assert longer.errors == 1
    assert longer.reason == "FloodWait 1000 s"


def test_errors_back_off_exponentially_then_exclude(
    clock: FakeAsyncClock, state_path: Path
) -> None:
    worker, seen = make(clock, state_path, max_consecutive_errors=3, cooldown_sec=300)
    first = worker.on_peer_flood(ACC)
    assert (first.state, first.errors) == (AccountState.COOLDOWN, 1)
    assert first.until == START + timedelta(seconds=300)

    clock.advance(300)
    assert worker.status(ACC).state is AccountState.ACTIVE
    assert worker.status(ACC).errors == 1  # the end of a cooldown does not forgive

    second = worker.on_timeout(ACC)
    assert (second.state, second.errors) == (AccountState.COOLDOWN, 2)
    assert second.until == clock.now() + timedelta(seconds=600)

    clock.advance(600)
    third = worker.on_peer_flood(ACC)
    assert third.state is AccountState.EXCLUDED
    assert third.errors == 3
    assert third.until is None
    assert "PeerFlood" in third.reason and "@SpamBot" in third.reason
    assert [s.state for s in seen] == [
        AccountState.COOLDOWN,
        AccountState.ACTIVE,
        AccountState.COOLDOWN,
        AccountState.ACTIVE,
        AccountState.EXCLUDED,
    ]


def test_timeouts_exclusion_reason_names_timeouts(clock: FakeAsyncClock, state_path: Path) -> None:
    worker, _ = make(clock, state_path, max_consecutive_errors=1)
    status = worker.on_timeout(ACC)
    assert status.state is AccountState.EXCLUDED
    assert "timeout" in status.reason
    assert "SpamBot" not in status.reason


def test_excluded_leaves_only_by_restore(clock: FakeAsyncClock, state_path: Path) -> None:
    worker, seen = make(clock, state_path)
    excluded = worker.on_fatal(ACC, "USER_DEACTIVATED_BAN")
    assert excluded.state is AccountState.EXCLUDED
    assert excluded.reason == "USER_DEACTIVATED_BAN"

    assert worker.on_flood_wait(ACC, 5) == excluded
    assert worker.on_peer_flood(ACC) == excluded
    assert worker.on_timeout(ACC) == excluded
    assert worker.on_success(ACC).state is AccountState.EXCLUDED
    clock.advance(10**6)
    assert worker.status(ACC) == excluded

    restored = worker.restore(ACC)
    assert restored == AccountStatus(ACC, AccountState.ACTIVE, None, 0, "")
    assert seen[-1] == restored


def test_manual_exclude_and_restore_resets_errors(clock: FakeAsyncClock, state_path: Path) -> None:
    worker, _ = make(clock, state_path)
    worker.on_timeout(ACC)
    excluded = worker.exclude(ACC, "the user said so")
    assert (excluded.state, excluded.reason, excluded.errors) == (
        AccountState.EXCLUDED,
        "the user said so",
        1,
    )
    assert worker.restore(ACC).errors == 0


def test_success_resets_errors_but_not_the_state(clock: FakeAsyncClock, state_path: Path) -> None:
    worker, seen = make(clock, state_path)
    worker.on_peer_flood(ACC)
    worker.on_timeout(ACC)
    assert worker.status(ACC).errors == 2
    cooling = worker.status(ACC)

    status = worker.on_success(ACC)
    assert status.errors == 0
    assert status.state is AccountState.COOLDOWN
    assert status.until == cooling.until

    notified = len(seen)
    assert worker.on_success(ACC) == status
    assert len(seen) == notified  # no change, no notification


def test_disabled_policy_ignores_peer_flood_and_timeouts_but_not_flood_wait(
    clock: FakeAsyncClock, state_path: Path
) -> None:
    worker, seen = make(clock, state_path, enabled=False, max_consecutive_errors=1)
    assert worker.on_peer_flood(ACC) == AccountStatus(ACC, AccountState.ACTIVE)
    assert worker.on_timeout(ACC) == AccountStatus(ACC, AccountState.ACTIVE)
    assert seen == []

    waiting = worker.on_flood_wait(ACC, 7)
    assert waiting.state is AccountState.COOLDOWN
    assert waiting.until == START + timedelta(seconds=7)
    assert worker.on_fatal(ACC, "SESSION_REVOKED").state is AccountState.EXCLUDED


def test_forget_drops_the_account(clock: FakeAsyncClock, state_path: Path) -> None:
    worker, _ = make(clock, state_path)
    worker.exclude(ACC, "x")
    worker.forget(ACC)
    assert worker.status(ACC).state is AccountState.ACTIVE
    assert worker.statuses() == []
    assert AntiSpamWorker(FloodPolicy(), state_path, clock).statuses() == []


def test_states_persist_across_instances(clock: FakeAsyncClock, state_path: Path) -> None:
    worker, _ = make(clock, state_path)
    worker.on_flood_wait("1", 100)
    worker.on_timeout("2")
    worker.exclude("3", "banned, probably")

    again = AntiSpamWorker(FloodPolicy(), state_path, clock)
    assert again.statuses() == worker.statuses()
    assert again.status("1").until == START + timedelta(seconds=100)
    assert again.status("2").errors == 1
    assert again.status("3").reason == "banned, probably"
    assert not list(state_path.parent.glob("*.tmp"))  # the atomic write left nothing behind


def test_a_cooldown_that_ended_while_closed_is_active_after_restart(
    clock: FakeAsyncClock, state_path: Path
) -> None:
    worker, _ = make(clock, state_path)
    worker.on_peer_flood(ACC)
    clock.advance(301)
    again = AntiSpamWorker(FloodPolicy(), state_path, clock)
    status = again.status(ACC)
    assert status.state is AccountState.ACTIVE
    assert status.errors == 1


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        b"\xff\xfe",
        b'{"version": 1, "accounts": {"1": {"state": "sleeping", "until": null, '
        b'"errors": 0, "reason": ""}}}',
        b'{"version": 1, "accounts": {"1": {"state": "cooldown", "until": null, '
        b'"errors": 0, "reason": ""}}}',
        b"[]",
    ],
)
def test_corrupt_file_starts_fresh_and_keeps_the_file(
    clock: FakeAsyncClock,
    state_path: Path,
    content: bytes,
    caplog: pytest.LogCaptureFixture,
) -> None:
    state_path.parent.mkdir(parents=True)
    state_path.write_bytes(content)
    with caplog.at_level(logging.WARNING, logger="tgflow.antispam"):
        worker = AntiSpamWorker(FloodPolicy(), state_path, clock)
    assert worker.statuses() == []
    assert state_path.with_name(state_path.name + ".corrupt").read_bytes() == content
    assert not state_path.exists()
    assert any(r.name == "tgflow.antispam" and r.levelno == logging.WARNING for r in caplog.records)

    worker.on_flood_wait(ACC, 5)
    document = json.loads(state_path.read_text(encoding="utf-8"))
    assert document["accounts"][ACC]["state"] == "cooldown"


def test_a_failing_subscriber_does_not_stop_the_others(
    clock: FakeAsyncClock, state_path: Path
) -> None:
    worker = AntiSpamWorker(FloodPolicy(), state_path, clock)
    seen: list[AccountStatus] = []

    def broken(status: AccountStatus) -> None:
        raise RuntimeError("window closed")

    worker.subscribe(broken)
    worker.subscribe(seen.append)
    status = worker.on_flood_wait(ACC, 3)
    assert seen == [status]


def test_policy_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        FloodPolicy(max_consecutive_errors=0)
    with pytest.raises(ValueError):
        FloodPolicy(cooldown_sec=-1)


def test_wait_until_usable_waits_exactly_the_remaining_time(
    clock: FakeAsyncClock, state_path: Path
) -> None:
    worker, _ = make(clock, state_path)
    worker.on_flood_wait(ACC, 42)
    clock.advance(2)

    status = asyncio.run(worker.wait_until_usable(ACC, asyncio.Event()))

    assert status.state is AccountState.ACTIVE
    assert clock.sleeps == [40.0]
    assert clock.now() == START + timedelta(seconds=42)


def test_wait_until_usable_returns_at_once_when_not_cooling(
    clock: FakeAsyncClock, state_path: Path
) -> None:
    worker, _ = make(clock, state_path)
    assert asyncio.run(worker.wait_until_usable(ACC, asyncio.Event())).usable
    worker.exclude(ACC, "x")
    excluded = asyncio.run(worker.wait_until_usable(ACC, asyncio.Event()))
    assert excluded.state is AccountState.EXCLUDED
    assert clock.sleeps == []


def test_wait_until_usable_follows_a_cooldown_renewed_meanwhile(state_path: Path) -> None:
    class RenewingClock(FakeAsyncClock):
        """At the end of the first wait, Telegram asks for another 20 s."""

        worker: AntiSpamWorker | None = None

        async def sleep(self, seconds: float) -> None:
            await super().sleep(seconds)
            if len(self.sleeps) == 1 and self.worker is not None:
                self.worker.on_flood_wait(ACC, 20)

    renewing = RenewingClock(START)
    worker = AntiSpamWorker(FloodPolicy(), state_path, renewing)
    renewing.worker = worker
    worker.on_flood_wait(ACC, 10)

    status = asyncio.run(worker.wait_until_usable(ACC, asyncio.Event()))

    assert status.usable
    assert renewing.sleeps == [10.0, 20.0]


def test_wait_until_usable_returns_once_stop_is_set(
    clock: FakeAsyncClock, state_path: Path
) -> None:
    worker, _ = make(clock, state_path)
    worker.on_flood_wait(ACC, 3600)
    stop = asyncio.Event()
    stop.set()
    status = asyncio.run(worker.wait_until_usable(ACC, stop))
    assert status.state is AccountState.COOLDOWN
    assert clock.sleeps == []


def test_stop_interrupts_a_wait_in_progress(state_path: Path) -> None:
    class BlockingClock(FakeAsyncClock):
        """A clock whose waits never end by themselves."""

        def __init__(self) -> None:
            super().__init__(START)
            self.cancelled = False

        async def sleep(self, seconds: float) -> None:
            self.sleeps.append(seconds)
            try:
                await asyncio.get_running_loop().create_future()
            except asyncio.CancelledError:
                self.cancelled = True
                raise

    blocking = BlockingClock()
    worker = AntiSpamWorker(FloodPolicy(), state_path, blocking)
    worker.on_flood_wait(ACC, 3600)

    async def scenario() -> AccountStatus:
        stop = asyncio.Event()
        waiting = asyncio.create_task(worker.wait_until_usable(ACC, stop))
        while not blocking.sleeps:
            await asyncio.sleep(0)
        assert not waiting.done()
        stop.set()
        # A generous bound only so that a regression fails instead of hanging; it returns at once.
        return await asyncio.wait_for(waiting, 10)

    status = asyncio.run(scenario())
    assert status.state is AccountState.COOLDOWN
    assert blocking.sleeps == [3600.0]
    assert blocking.cancelled
    assert blocking.now() == START
