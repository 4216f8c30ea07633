"""The usage journal against a real server: normal use, every crash point, lost answers, expiry.

A "crash" is simulated in-process by closing the journal without settling and opening a new
``UsageJournal`` on the same file (what a restarted program does); the subprocess tests kill a
real process with SIGKILL. The server's own count (``GET /license`` ``quota``) is the judge.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from agent.errors import Offline, QuotaExceeded
from agent.journal import EntryState, JournalError, Outcome, UsageJournal
from agent.protocol import RESERVATION_TTL_SECONDS, ReservationResponse, SettleResponse
from agent.usage_http import HttpUsageBackend
from tests.agent.journal_child import TOKEN_ENV
from tests.helpers.agent_backend import AgentBackend, closed_port_url, running_backend
from tests.helpers.api import PASSWORD, bearer, fingerprint, register

REPO = Path(__file__).resolve().parents[2]
QUOTA = 100  # the free plan a new account gets
T = TypeVar("T")


@dataclass
class Account:
    email: str
    fingerprint: str
    token: str


def new_account(backend: AgentBackend) -> Account:
    fp = fingerprint()
    email = f"journal-{os.urandom(4).hex()}@example.com"
    return Account(email, fp, register(backend.client, email=email, fp=fp)["token"])


def login(backend: AgentBackend, account: Account) -> None:
    r = backend.client.post(
        "/auth/login",
        json={
            "email": account.email,
            "password": PASSWORD,
            "device_fingerprint": account.fingerprint,
        },
    )
    assert r.status_code == 200, r.text
    account.token = r.json()["token"]


def quota(backend: AgentBackend, account: Account) -> dict[str, int]:
    r = backend.client.get("/license", headers=bearer(account.token))
    assert r.status_code == 200, r.text
    q = r.json()["quota"]
    return {"used": q["used"], "held": q["held"], "remaining": q["remaining"]}


def run(make: Callable[[HttpUsageBackend], Awaitable[T]], url: str, token: str) -> T:
    """Run ``make(backend)`` on a fresh event loop with an HTTP backend for ``url``."""

    async def go() -> T:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            return await make(HttpUsageBackend(client, token))

    return asyncio.run(go())


@dataclass
class Recording:
    """A backend that forwards to the real one, records each call, and can lose one answer.

    ``lose`` names a call (``reserve``, ``commit``, ``rollback``) whose next answer is dropped
    after the server has acted on it: the caller gets :class:`Offline`, as when a connection
    breaks after the request went out.
    """

    inner: HttpUsageBackend
    lose: str | None = None
    calls: list[tuple[Any, ...]] = field(default_factory=list)
    lost: list[ReservationResponse | SettleResponse] = field(default_factory=list)

    def _maybe_lose(self, name: str, answer: T) -> T:
        if self.lose == name:
            self.lose = None
            self.lost.append(answer)  # type: ignore[arg-type]
            raise Offline(f"the answer to {name} was lost")
        return answer

    async def reserve(self, messages: int, correlation_id: str) -> ReservationResponse:
        self.calls.append(("reserve", messages, correlation_id))
        return self._maybe_lose("reserve", await self.inner.reserve(messages, correlation_id))

    async def commit(self, reservation_id: str, used: int) -> SettleResponse:
        self.calls.append(("commit", reservation_id, used))
        return self._maybe_lose("commit", await self.inner.commit(reservation_id, used))

    async def rollback(self, reservation_id: str) -> SettleResponse:
        self.calls.append(("rollback", reservation_id))
        return self._maybe_lose("rollback", await self.inner.rollback(reservation_id))


@asynccontextmanager
async def recording(url: str, token: str, lose: str | None = None) -> AsyncIterator[Recording]:
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        yield Recording(HttpUsageBackend(client, token), lose)


@pytest.fixture
def account(backend: AgentBackend) -> Account:
    return new_account(backend)


# --- normal use ---------------------------------------------------------------------------------


def test_reserve_then_sends_then_commit_counts_exactly_the_sends(
    backend: AgentBackend, account: Account, tmp_path: Path
) -> None:
    path = tmp_path / "journal.sqlite"

    async def scenario(usage: HttpUsageBackend) -> None:
        with UsageJournal(path) as journal:
            entry = await journal.reserve(usage, 5)
            assert entry.state == EntryState.HELD and entry.reservation_id and entry.sent == 0
            assert quota(backend, account) == {"used": 0, "held": 5, "remaining": 95}
            assert journal.record_sent(entry.reservation_id, "alice") is True
            assert journal.record_sent(entry.correlation_id, "bob") is True
            assert journal.record_sent(entry.correlation_id, "alice") is False  # a retried record
            assert journal.record_sent(entry.correlation_id, "carol") is True
            assert journal.entry(entry.correlation_id).sent == 3
            assert journal.sent_recipients(entry.correlation_id) == ["alice", "bob", "carol"]

            outcome = await journal.finish(usage, entry.correlation_id)
            assert (outcome.outcome, outcome.used, outcome.sent) == (Outcome.COMMITTED, 3, 3)
            assert outcome.reservation_id == entry.reservation_id
            settled = journal.entry(entry.correlation_id)
            assert (settled.state, settled.used, settled.sealed) == (EntryState.COMMITTED, 3, 3)
            with pytest.raises(JournalError, match="committed"):
                journal.record_sent(entry.correlation_id, "dave")
            # finishing again asks nothing and reports the same
            assert await journal.finish(usage, entry.correlation_id) == outcome

        with UsageJournal(path) as reopened:
            assert reopened.entries(open_only=True) == []
            assert await reopened.settle(usage) == []

    run(scenario, backend.url, account.token)
    assert quota(backend, account) == {"used": 3, "held": 0, "remaining": QUOTA - 3}


def test_a_batch_cannot_record_more_sends_than_it_reserved(
    backend: AgentBackend, account: Account, tmp_path: Path
) -> None:
    async def scenario(usage: HttpUsageBackend) -> None:
        with UsageJournal(tmp_path / "j.sqlite") as journal:
            entry = await journal.reserve(usage, 2)
            journal.record_sent(entry.correlation_id, "a")
            journal.record_sent(entry.correlation_id, "b")
            assert journal.record_sent(entry.correlation_id, "b") is False
            with pytest.raises(JournalError, match="reserved 2"):
                journal.record_sent(entry.correlation_id, "c")
            assert journal.entry(entry.correlation_id).sent == 2
            assert (await journal.finish(usage, entry.correlation_id)).used == 2

    run(scenario, backend.url, account.token)
    assert quota(backend, account)["used"] == 2


def test_quota_exceeded_is_recorded_as_refused_and_holds_nothing(
    backend: AgentBackend, account: Account, tmp_path: Path
) -> None:
    async def scenario(usage: HttpUsageBackend) -> None:
        with UsageJournal(tmp_path / "j.sqlite") as journal:
            with pytest.raises(QuotaExceeded):
                await journal.reserve(usage, QUOTA + 1, correlation_id="too-many-0001")
            assert journal.entry("too-many-0001").state == EntryState.REFUSED
            assert journal.entries(open_only=True) == []

    run(scenario, backend.url, account.token)
    assert quota(backend, account) == {"used": 0, "held": 0, "remaining": QUOTA}


def test_settle_leaves_the_reservations_of_its_own_run_alone(
    backend: AgentBackend, account: Account, tmp_path: Path
) -> None:
    async def scenario(usage: HttpUsageBackend) -> None:
        with UsageJournal(tmp_path / "j.sqlite") as journal:
            entry = await journal.reserve(usage, 3)
            journal.record_sent(entry.correlation_id, "a")
            assert await journal.settle(usage) == []
            assert journal.entry(entry.correlation_id).state == EntryState.HELD

    run(scenario, backend.url, account.token)
    assert quota(backend, account) == {"used": 0, "held": 3, "remaining": QUOTA - 3}


# --- crashes at each point ----------------------------------------------------------------------


def test_crash_after_the_intent_before_the_request_is_rolled_back(
    backend: AgentBackend, account: Account, tmp_path: Path
) -> None:
    path = tmp_path / "j.sqlite"
    with UsageJournal(path) as crashed:
        cid = crashed.begin(4)
    assert quota(backend, account) == {"used": 0, "held": 0, "remaining": QUOTA}

    async def restart() -> Recording:
        async with recording(backend.url, account.token) as usage:
            with UsageJournal(path) as journal:
                assert journal.entry(cid).state == EntryState.RESERVING
                [outcome] = await journal.settle(usage)
                assert outcome.outcome == Outcome.ROLLED_BACK and outcome.sent == 0
                assert outcome.used == 0 and outcome.reservation_id
                assert journal.entry(cid).state == EntryState.ROLLED_BACK
                assert await journal.settle(usage) == []
            return usage

    usage = asyncio.run(restart())
    reservation_id = usage.calls[1][1]
    assert usage.calls == [("reserve", 4, cid), ("rollback", reservation_id)]
    assert quota(backend, account) == {"used": 0, "held": 0, "remaining": QUOTA}


def test_crash_after_the_reserve_reached_the_server_replays_the_same_reservation(
    backend: AgentBackend, account: Account, tmp_path: Path
) -> None:
    path = tmp_path / "j.sqlite"

    async def crash() -> ReservationResponse:
        async with recording(backend.url, account.token, lose="reserve") as usage:
            with UsageJournal(path) as journal:
                with pytest.raises(Offline):
                    await journal.reserve(usage, 6, correlation_id="batch-lost-answer")
                assert journal.entry("batch-lost-answer").state == EntryState.RESERVING
            [answer] = usage.lost
            assert isinstance(answer, ReservationResponse)
            return answer

    first = asyncio.run(crash())
    assert quota(backend, account) == {"used": 0, "held": 6, "remaining": QUOTA - 6}

    async def restart() -> Recording:
        async with recording(backend.url, account.token) as usage:
            with UsageJournal(path) as journal:
                [outcome] = await journal.settle(usage)
                assert outcome.outcome == Outcome.ROLLED_BACK
                assert outcome.reservation_id == first.reservation_id
                entry = journal.entry("batch-lost-answer")
                assert (entry.state, entry.reservation_id) == (
                    EntryState.ROLLED_BACK,
                    first.reservation_id,
                )
            return usage

    usage = asyncio.run(restart())
    # the replay found the existing hold instead of taking a second one
    assert usage.calls == [
        ("reserve", 6, "batch-lost-answer"),
        ("rollback", first.reservation_id),
    ]
    assert quota(backend, account) == {"used": 0, "held": 0, "remaining": QUOTA}


@pytest.mark.parametrize("sent", [0, 4, 10])
def test_crash_after_sending_n_of_m_commits_exactly_n(
    backend: AgentBackend, account: Account, tmp_path: Path, sent: int
) -> None:
    path = tmp_path / "j.sqlite"

    async def crash(usage: HttpUsageBackend) -> str:
        with UsageJournal(path) as journal:
            entry = await journal.reserve(usage, 10)
            for i in range(sent):
                journal.record_sent(entry.correlation_id, f"r{i}")
            return entry.correlation_id

    cid = run(crash, backend.url, account.token)
    assert quota(backend, account) == {"used": 0, "held": 10, "remaining": QUOTA - 10}

    async def restart(usage: HttpUsageBackend) -> None:
        with UsageJournal(path) as journal:
            assert journal.entry(cid).sent == sent
            [outcome] = await journal.settle(usage)
            expected = Outcome.COMMITTED if sent else Outcome.ROLLED_BACK
            assert (outcome.outcome, outcome.sent, outcome.used) == (expected, sent, sent)
            assert outcome.uncounted == 0

    run(restart, backend.url, account.token)
    assert quota(backend, account) == {"used": sent, "held": 0, "remaining": QUOTA - sent}


def test_a_commit_whose_answer_was_lost_is_retried_and_counted_once(
    backend: AgentBackend, account: Account, tmp_path: Path
) -> None:
    path = tmp_path / "j.sqlite"

    async def crash() -> tuple[str, SettleResponse]:
        async with recording(backend.url, account.token, lose="commit") as usage:
            with UsageJournal(path) as journal:
                entry = await journal.reserve(usage, 8)
                for name in ("a", "b", "c", "d", "e"):
                    journal.record_sent(entry.correlation_id, name)
                with pytest.raises(Offline):
                    await journal.finish(usage, entry.correlation_id)
                sealed = journal.entry(entry.correlation_id)
                assert (sealed.state, sealed.sealed) == (EntryState.SETTLING, 5)
                with pytest.raises(JournalError, match="settling"):
                    journal.record_sent(entry.correlation_id, "f")
            [answer] = usage.lost
            assert isinstance(answer, SettleResponse)
            return entry.correlation_id, answer

    cid, first = asyncio.run(crash())
    assert first.used == 5
    assert quota(backend, account) == {"used": 5, "held": 0, "remaining": QUOTA - 5}

    async def restart() -> Recording:
        async with recording(backend.url, account.token) as usage:
            with UsageJournal(path) as journal:
                [outcome] = await journal.settle(usage)
                assert (outcome.outcome, outcome.used) == (Outcome.COMMITTED, 5)
                assert journal.entry(cid).state == EntryState.COMMITTED
            return usage

    usage = asyncio.run(restart())
    assert usage.calls == [("commit", first.reservation_id, 5)]
    assert quota(backend, account) == {"used": 5, "held": 0, "remaining": QUOTA - 5}


def test_a_hold_that_expired_on_the_server_is_reported(
    backend: AgentBackend, account: Account, tmp_path: Path
) -> None:
    path = tmp_path / "j.sqlite"

    async def crash(usage: HttpUsageBackend) -> str:
        with UsageJournal(path) as journal:
            entry = await journal.reserve(usage, 3)
            journal.record_sent(entry.correlation_id, "a")
            journal.record_sent(entry.correlation_id, "b")
            return entry.correlation_id

    cid = run(crash, backend.url, account.token)
    backend.clock.advance(RESERVATION_TTL_SECONDS + 1)
    login(backend, account)  # the old access token expired with the hold

    async def restart(usage: HttpUsageBackend) -> None:
        with UsageJournal(path) as journal:
            [outcome] = await journal.settle(usage)
            assert (outcome.outcome, outcome.sent, outcome.used) == (Outcome.EXPIRED, 2, 0)
            assert outcome.uncounted == 2
            assert "2 send(s) not counted" in outcome.detail
            assert journal.entry(cid).state == EntryState.EXPIRED

    run(restart, backend.url, account.token)
    assert quota(backend, account) == {"used": 0, "held": 0, "remaining": QUOTA}


@pytest.mark.parametrize("behind_our_back", ["commit", "rollback"])
def test_a_reservation_settled_otherwise_is_reported_as_a_conflict(
    backend: AgentBackend, account: Account, tmp_path: Path, behind_our_back: str
) -> None:
    path = tmp_path / "j.sqlite"

    async def crash(usage: HttpUsageBackend) -> str:
        with UsageJournal(path) as journal:
            entry = await journal.reserve(usage, 5)
            assert entry.reservation_id
            journal.record_sent(entry.correlation_id, "a")
            journal.record_sent(entry.correlation_id, "b")
            if behind_our_back == "commit":
                await usage.commit(entry.reservation_id, 1)
            else:
                await usage.rollback(entry.reservation_id)
            return entry.correlation_id

    cid = run(crash, backend.url, account.token)
    counted = 1 if behind_our_back == "commit" else 0

    async def restart(usage: HttpUsageBackend) -> None:
        with UsageJournal(path) as journal:
            [outcome] = await journal.settle(usage)
            assert outcome.outcome == Outcome.CONFLICT
            entry = journal.entry(cid)
            if behind_our_back == "commit":
                # the server will not say with which count: unknown, not guessed
                assert (entry.state, outcome.used, outcome.uncounted) == (
                    EntryState.COMMITTED,
                    None,
                    None,
                )
            else:
                assert (entry.state, outcome.used, outcome.uncounted) == (
                    EntryState.ROLLED_BACK,
                    0,
                    2,
                )
            assert journal.entries(open_only=True) == []

    run(restart, backend.url, account.token)
    assert quota(backend, account) == {"used": counted, "held": 0, "remaining": QUOTA - counted}


def test_settle_while_offline_defers_and_keeps_the_entry_open(
    backend: AgentBackend, account: Account, tmp_path: Path
) -> None:
    path = tmp_path / "j.sqlite"

    async def crash(usage: HttpUsageBackend) -> str:
        with UsageJournal(path) as journal:
            entry = await journal.reserve(usage, 4)
            journal.record_sent(entry.correlation_id, "a")
            return entry.correlation_id

    cid = run(crash, backend.url, account.token)

    async def offline(usage: HttpUsageBackend) -> None:
        with UsageJournal(path) as journal:
            [outcome] = await journal.settle(usage)
            assert (outcome.outcome, outcome.used) == (Outcome.DEFERRED, None)
            assert outcome.detail.startswith("Offline")
            assert journal.entry(cid).is_open

    run(offline, closed_port_url(), account.token)
    assert quota(backend, account) == {"used": 0, "held": 4, "remaining": QUOTA - 4}

    async def online(usage: HttpUsageBackend) -> None:
        with UsageJournal(path) as journal:
            [outcome] = await journal.settle(usage)
            assert (outcome.outcome, outcome.used) == (Outcome.COMMITTED, 1)

    run(online, backend.url, account.token)
    assert quota(backend, account) == {"used": 1, "held": 0, "remaining": QUOTA - 1}


def test_records_survive_in_the_file_and_the_file_is_wal(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    with UsageJournal(path) as journal:
        cid = journal.begin(3, correlation_id="durable-0001")
        assert journal.begin(3, correlation_id=cid) == cid  # a retry of the same intent
        with pytest.raises(JournalError, match="already reserving for 3"):
            journal.begin(5, correlation_id=cid)
        mode = journal._db.execute("PRAGMA journal_mode").fetchone()[0]
        sync = journal._db.execute("PRAGMA synchronous").fetchone()[0]
    assert (mode, sync) == ("wal", 2)  # 2 = FULL
    with UsageJournal(path) as reopened:
        entry = reopened.entry(cid)
        assert (entry.state, entry.messages, entry.reservation_id) == (
            EntryState.RESERVING,
            3,
            None,
        )
        with pytest.raises(JournalError, match="reserving"):
            reopened.record_sent(cid, "a")


# --- a real process, really killed -------------------------------------------------------------


def start_child(
    backend: AgentBackend, account: Account, path: Path, messages: int, sends: int
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            *("-m", "tests.agent.journal_child"),
            *(backend.url, str(path), str(messages), str(sends)),
        ],
        cwd=REPO,
        env={**os.environ, TOKEN_ENV: account.token},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def kill(child: subprocess.Popen[str]) -> None:
    child.kill()
    assert child.wait(timeout=30) != 0
    if sys.platform != "win32":
        assert child.returncode == -signal.SIGKILL
    assert child.stdin and child.stdout
    child.stdin.close()
    child.stdout.close()


def read_line(child: subprocess.Popen[str]) -> str:
    assert child.stdout is not None
    line = child.stdout.readline()
    assert line, f"the child ended early (exit code {child.poll()})"
    return line.strip()


def settle_after_kill(
    backend: AgentBackend, account: Account, path: Path, cid: str
) -> tuple[int, int | None]:
    """Open the journal the killed child left, settle it; return (sends recorded, used)."""

    async def restart(usage: HttpUsageBackend) -> tuple[int, int | None]:
        with UsageJournal(path) as journal:
            assert journal.entry(cid).state == EntryState.HELD
            [outcome] = await journal.settle(usage)
            assert outcome.correlation_id == cid
            assert outcome.outcome == Outcome.COMMITTED
            return outcome.sent, outcome.used

    return run(restart, backend.url, account.token)


def test_a_killed_process_that_sent_n_of_m_is_charged_exactly_n(
    backend: AgentBackend, account: Account, tmp_path: Path
) -> None:
    path = tmp_path / "j.sqlite"
    child = start_child(backend, account, path, messages=10, sends=4)
    try:
        reserved = read_line(child)
        assert reserved.startswith("reserved ")
        cid = reserved.split()[1]
        assert [read_line(child) for _ in range(4)] == [f"sent {i}" for i in range(1, 5)]
    finally:
        kill(child)
    assert quota(backend, account) == {"used": 0, "held": 10, "remaining": QUOTA - 10}

    assert settle_after_kill(backend, account, path, cid) == (4, 4)
    assert quota(backend, account) == {"used": 4, "held": 0, "remaining": QUOTA - 4}


def test_a_process_killed_while_recording_is_charged_what_its_journal_holds(
    backend: AgentBackend, account: Account, tmp_path: Path
) -> None:
    """Killed mid-stream, without waiting for it to pause: the count is whatever reached disk."""
    path = tmp_path / "j.sqlite"
    child = start_child(backend, account, path, messages=50, sends=50)
    try:
        cid = read_line(child).split()[1]
        seen = [read_line(child) for _ in range(3)]
        assert seen == ["sent 1", "sent 2", "sent 3"]
    finally:
        kill(child)

    recorded, used = settle_after_kill(backend, account, path, cid)
    # at least what the child reported; never more than it was allowed to record
    assert 3 <= recorded <= 50
    assert used == recorded
    assert quota(backend, account) == {"used": recorded, "held": 0, "remaining": QUOTA - recorded}


def test_the_server_killed_between_reserve_and_commit_is_settled_after_its_restart(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "server"
    path = tmp_path / "j.sqlite"
    with running_backend(data_dir) as first:
        account = new_account(first)

        async def before_the_crash(usage: HttpUsageBackend) -> str:
            with UsageJournal(path) as journal:
                entry = await journal.reserve(usage, 6)
                for i in range(4):
                    journal.record_sent(entry.correlation_id, f"r{i}")
                first.stop()  # the server dies after the sends, before the commit
                with pytest.raises(Offline):
                    await journal.finish(usage, entry.correlation_id)
                assert journal.entry(entry.correlation_id).sealed == 4
                return entry.correlation_id

        cid = run(before_the_crash, first.url, account.token)

    # The same database and keys, a new process: the hold is still there, nothing counted.
    with running_backend(data_dir) as second:
        assert quota(second, account) == {"used": 0, "held": 6, "remaining": QUOTA - 6}

        async def after_the_restart(usage: HttpUsageBackend) -> None:
            with UsageJournal(path) as journal:
                [outcome] = await journal.settle(usage)
                assert outcome.correlation_id == cid
                assert (outcome.outcome, outcome.used, outcome.uncounted) == (
                    Outcome.COMMITTED,
                    4,
                    0,
                )

        run(after_the_restart, second.url, account.token)
        assert quota(second, account) == {"used": 4, "held": 0, "remaining": QUOTA - 4}
