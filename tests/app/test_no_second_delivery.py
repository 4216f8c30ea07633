"""No accidental second delivery, and the suppression list: asserted on what reaches the
transport's ``send_message``, over the real backend, the simulated Telegram and a fake clock."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from app.broadcast import Pacing, Progress
from app.broadcast_store import (
    ALREADY_RECEIVED,
    BroadcastState,
    BroadcastStore,
    RecipientState,
    SuppressionReason,
)
from app.core import Core
from app.transports.base import RecipientBlocked, RecipientOutcome
from app.transports.simulated import SimulatedTransport
from tests.helpers.desktop import Desktop, quota_used

LIST = [f"@opted_in_{i:03d}" for i in range(10)]
TEXT = "Вебинар в четверг в 18:00"
STEADY = Pacing(min_delay_sec=5, max_delay_sec=5, batch_size=4)


class Observer:
    """Keeps the recipients' events; ``on_sent(n)`` after the n-th sent one (engine thread)."""

    def __init__(self, on_sent: Callable[[int], None] | None = None) -> None:
        self.rows: list[tuple[str, RecipientState, str]] = []
        self._on_sent = on_sent

    def progress(self, progress: Progress) -> None:
        pass

    def recipient(
        self, broadcast_id: str, recipient: str, state: RecipientState, detail: str
    ) -> None:
        self.rows.append((recipient, state, detail))
        if state is RecipientState.SENT and self._on_sent is not None:
            self._on_sent(sum(1 for _r, s, _d in self.rows if s is RecipientState.SENT))

    def notice(self, broadcast_id: str, kind: str, message: str) -> None:
        pass


@pytest.fixture
def sends(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Every (recipient, text) that reaches a transport's ``send_message``."""
    calls: list[tuple[str, str]] = []
    original = SimulatedTransport.send_message

    async def send_message(self: SimulatedTransport, recipient: str, text: str) -> None:
        calls.append((recipient, text))
        await original(self, recipient, text)

    monkeypatch.setattr(SimulatedTransport, "send_message", send_message)
    return calls


def ready(desktop: Desktop) -> tuple[str, Core]:
    """Signed in with a simulated account: its id, and the core."""
    core = desktop.make_core(pacing=STEADY)
    desktop.sign_in()
    return desktop.add_account().account_id, core


def send(
    desktop: Desktop,
    account_id: str,
    recipients: list[str],
    text: str = TEXT,
    *,
    send_again: bool = False,
    observer: Observer | None = None,
) -> Progress:
    core = desktop.core
    assert core is not None
    broadcast_id = desktop.call(
        lambda: core.create_broadcast(account_id, text, recipients, send_again=send_again)
    )
    return desktop.run(core.run_broadcast(broadcast_id, observer or Observer()))


def test_the_same_list_and_text_again_reaches_only_the_new_recipients(
    desktop: Desktop, sends: list[tuple[str, str]]
) -> None:
    account_id, core = ready(desktop)
    first = send(desktop, account_id, LIST)
    assert first.state is BroadcastState.FINISHED and first.counts.sent == 10
    assert sends == [(r, TEXT) for r in LIST]
    sends.clear()

    again = [*LIST, "@newcomer_one", "@newcomer_two"]
    plan = desktop.call(lambda: core.delivery_plan(TEXT, again))
    assert plan.already_received == tuple(LIST)
    assert (plan.total, plan.fresh, plan.suppressed) == (12, 2, ())
    assert plan.last_sent_at is not None

    second = send(desktop, account_id, again)
    assert sends == [("@newcomer_one", TEXT), ("@newcomer_two", TEXT)]
    assert second.state is BroadcastState.FINISHED
    assert (second.counts.sent, second.counts.skipped, second.counts.pending) == (2, 10, 0)
    rows = desktop.call(lambda: core.recipients(second.broadcast_id))
    assert {r.detail for r in rows if r.state is RecipientState.SKIPPED} == {ALREADY_RECEIVED}
    assert quota_used(desktop.backend) == (12, 0)  # nothing reserved for the skipped

    # Another text is another message: the same people get it.
    sends.clear()
    send(desktop, account_id, LIST[:3], "Another message")
    assert sends == [(r, "Another message") for r in LIST[:3]]


def test_the_explicit_choice_sends_the_same_text_again(
    desktop: Desktop, sends: list[tuple[str, str]]
) -> None:
    account_id, _core = ready(desktop)
    send(desktop, account_id, LIST[:5])
    sends.clear()
    final = send(desktop, account_id, LIST[:5], send_again=True)
    assert sends == [(r, TEXT) for r in LIST[:5]]
    assert (final.counts.sent, final.counts.skipped) == (5, 0)
    assert quota_used(desktop.backend) == (10, 0)


def test_a_partly_sent_broadcast_and_a_new_one_never_deliver_twice(
    desktop: Desktop, sends: list[tuple[str, str]]
) -> None:
    account_id, core = ready(desktop)
    holder: dict[str, str] = {}

    def stop_after_four(n: int) -> None:
        if n == 4:
            core.stop_broadcast(holder["id"])

    broadcast_id = desktop.call(lambda: core.create_broadcast(account_id, TEXT, LIST))
    holder["id"] = broadcast_id
    stopped = desktop.run(core.run_broadcast(broadcast_id, Observer(stop_after_four)))
    assert (stopped.counts.sent, stopped.counts.pending) == (4, 6)

    # The same list and text imported again: the four who got it are left out.
    plan = desktop.call(lambda: core.delivery_plan(TEXT, LIST))
    assert plan.already_received == tuple(LIST[:4]) and plan.fresh == 6
    second = send(desktop, account_id, LIST)
    assert (second.counts.sent, second.counts.skipped) == (6, 4)

    # Continuing the first one now sends nothing: its six pending got the text meanwhile.
    resumed = desktop.run(core.run_broadcast(broadcast_id, Observer()))
    assert resumed.state is BroadcastState.FINISHED
    assert (resumed.counts.sent, resumed.counts.skipped, resumed.counts.pending) == (4, 6, 0)
    assert sorted(sends) == sorted((r, TEXT) for r in LIST)  # each person exactly once
    assert quota_used(desktop.backend) == (10, 0)


def test_a_recipient_who_blocked_the_account_is_never_sent_to_again_even_after_a_restart(
    desktop: Desktop, sends: list[tuple[str, str]]
) -> None:
    account_id, core = ready(desktop)
    blocker = LIST[2]
    desktop.network.script(account_id, RecipientBlocked(blocker, "USER_IS_BLOCKED"), at=3)
    assert RecipientBlocked(blocker, "x").kind is RecipientOutcome.BLOCKED
    first = send(desktop, account_id, LIST)
    assert (first.counts.sent, first.counts.failed) == (9, 1)
    entries = desktop.call(core.suppressed)
    assert [(e.recipient, e.reason, e.detail) for e in entries] == [
        (blocker, SuppressionReason.BLOCKED, "USER_IS_BLOCKED")
    ]

    # A restart: a new Core over the same data dir still knows.
    desktop.close_core()
    core = desktop.make_core(pacing=STEADY)
    desktop.sign_in()
    assert [e.recipient for e in desktop.call(core.suppressed)] == [blocker]
    sends.clear()
    # Another list, another text, and even the explicit "send again": not to the blocker.
    other = send(desktop, account_id, [blocker, "@someone_else"], "New text", send_again=True)
    assert sends == [("@someone_else", "New text")]
    rows = desktop.call(lambda: core.recipients(other.broadcast_id))
    assert [(r.recipient, r.state, r.detail) for r in rows if r.recipient == blocker] == [
        (blocker, RecipientState.SKIPPED, "suppressed:blocked")
    ]


def test_a_recipient_suppressed_during_a_run_is_skipped_before_the_send(
    desktop: Desktop, sends: list[tuple[str, str]]
) -> None:
    account_id, core = ready(desktop)
    late = LIST[2]  # in the first batch (4), which was taken before the user marked it

    def mark_after_first(n: int) -> None:
        if n == 1:
            core.suppress([late])

    final = send(desktop, account_id, LIST, observer=Observer(mark_after_first))
    assert late not in [r for r, _t in sends]
    assert (final.counts.sent, final.counts.skipped) == (9, 1)
    assert quota_used(desktop.backend) == (9, 0)  # the reserved message was released


def test_user_marks_and_opt_outs_hold_across_lists_and_can_be_taken_off(
    desktop: Desktop, sends: list[tuple[str, str]]
) -> None:
    account_id, core = ready(desktop)
    assert desktop.call(lambda: core.suppress([LIST[0], LIST[1]])) == 2
    assert desktop.call(lambda: core.suppress([LIST[1]], SuppressionReason.OPT_OUT)) == 0
    assert desktop.call(lambda: core.suppress([LIST[5]], SuppressionReason.OPT_OUT)) == 1
    reasons = {e.recipient: e.reason for e in desktop.call(core.suppressed)}
    # The first reason stays: a person marked by the user is not re-labelled by an import.
    assert reasons == {
        LIST[0]: SuppressionReason.USER,
        LIST[1]: SuppressionReason.USER,
        LIST[5]: SuppressionReason.OPT_OUT,
    }
    send(desktop, account_id, LIST[:6], "List A")
    send(desktop, account_id, list(reversed(LIST)), "List B")
    assert {r for r, _t in sends} == set(LIST) - {LIST[0], LIST[1], LIST[5]}

    assert desktop.call(lambda: core.unsuppress([LIST[0]])) == 1
    sends.clear()
    send(desktop, account_id, [LIST[0], LIST[1]], "List C")
    assert sends == [(LIST[0], "List C")]


def test_a_store_written_before_the_send_again_column_still_opens(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "broadcasts.sqlite"
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TABLE broadcasts (id TEXT PRIMARY KEY, account_id TEXT NOT NULL, "
            "text TEXT NOT NULL, created_at TEXT NOT NULL, state TEXT NOT NULL, "
            "detail TEXT NOT NULL DEFAULT '')"
        )
        db.execute(
            "INSERT INTO broadcasts VALUES ('old1', '1555', 'hi', '2026-01-01T00:00:00+00:00', "
            "'finished', '')"
        )
    store = BroadcastStore(path)
    try:
        assert store.get("old1").send_again is False
        assert store.create("1555", "hi", ["@alice_one"], send_again=True)
    finally:
        store.close()
