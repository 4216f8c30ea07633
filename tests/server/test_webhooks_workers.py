"""The inbox's worker under failure and concurrency: a worker process killed (SIGKILL) mid-apply
leaves its event to be applied exactly once after a restart (SQLite and PostgreSQL); two workers
on one PostgreSQL database never apply one event twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text

from server_stub.db import transaction
from server_stub.services.billing.contract import ProviderName
from server_stub.services.webhooks import WebhookInbox
from server_stub.webhook_models import WebhookEvent
from tests.helpers.backend import ONLY_POSTGRES
from tests.helpers.server_process import REPO_ROOT
from tests.helpers.webhooks import (
    APPLICATIONS_DDL,
    DatabaseApplier,
    InboxApp,
    applications,
    inbox_app,
    stripe_event,
    stripe_headers,
)


@pytest.fixture
def hub(database_url: str, tmp_path: Path) -> Iterator[InboxApp]:
    with inbox_app(database_url, tmp_path / "data") as app:
        with app.services.ctx.engine.begin() as conn:
            conn.execute(text(APPLICATIONS_DDL))
        yield app


def send(app: InboxApp, event_id: str) -> None:
    body = stripe_event(event_id, app.now())
    r = app.client.post("/webhooks/stripe", content=body, headers=stripe_headers(body, app.now()))
    assert r.status_code == 200, r.text


def status(app: InboxApp, event_id: str) -> tuple[str, int, str | None]:
    with transaction(app.services.ctx.read) as session:
        row = session.scalar(select(WebhookEvent).where(WebhookEvent.event_id == event_id))
    assert row is not None
    return row.status, row.attempts, row.claimed_by


def kill_worker_mid_apply(app: InboxApp, *, after_commit: bool) -> None:
    """Run a worker process that claims the due event and blocks inside its apply; kill it."""
    settings = app.services.ctx.settings
    argv = [
        sys.executable,
        "-m",
        "tests.helpers.webhooks",
        settings.resolved_database_url(),
        str(settings.data_dir),
        app.clock.now().isoformat(),
        *(["--after-commit"] if after_commit else []),
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "TGFLOW_LOG_LEVEL": "WARNING"}
    proc = subprocess.Popen(
        argv, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # the worker says so once it is inside the apply
        assert line == "applying\n", (line, proc.stderr.read() if proc.stderr else "")
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=60) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


@pytest.mark.parametrize("after_commit", [False, True], ids=["before-commit", "after-commit"])
def test_a_worker_killed_mid_apply_leaves_the_event_applied_exactly_once(
    hub: InboxApp, after_commit: bool
) -> None:
    send(hub, "evt_kill")
    kill_worker_mid_apply(hub, after_commit=after_commit)
    assert status(hub, "evt_kill") == ("queued", 1, "victim")  # never marked applied
    engine = hub.services.ctx.engine
    # Killed before its commit: the database rolled the apply back. After it: it stands.
    assert applications(engine) == ([("evt_kill", "victim")] if after_commit else [])

    # The restarted worker's applier is idempotent only where it must be (after the commit):
    # before it, a second application would show as a second row.
    calls: list[str] = []
    applier = DatabaseApplier(
        engine, "restarted", idempotent=after_commit, before_commit=lambda: calls.append("x")
    )
    restarted = WebhookInbox(hub.services.ctx, applier=applier, worker="restarted")
    assert restarted.work_once() == 0  # the dead worker's lease still holds it
    hub.clock.advance(hub.services.ctx.settings.webhook_lease_seconds)
    assert restarted.work_once() == 1
    assert restarted.work_once() == 0
    assert status(hub, "evt_kill") == ("applied", 2, None)
    assert calls == ["x"]  # the applier ran once more, and only once
    assert len(applications(engine)) == 1


@ONLY_POSTGRES
def test_two_workers_on_postgresql_never_apply_one_event_twice(hub: InboxApp) -> None:
    events = [f"evt_{n:03}" for n in range(60)]
    for event_id in events:
        send(hub, event_id)
    engine = hub.services.ctx.engine
    # Each worker's first apply waits for the other's: both hold claims at the same time.
    barrier = threading.Barrier(2)
    workers = [
        WebhookInbox(
            hub.services.ctx,
            applier=DatabaseApplier(engine, name, barrier=barrier),
            worker=name,
        )
        for name in ("w1", "w2")
    ]
    errors: list[BaseException] = []

    def run(inbox: WebhookInbox) -> None:
        try:
            inbox.drain()
        except BaseException as exc:  # reported by the test thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(w,)) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not errors and not any(t.is_alive() for t in threads)
    applied = applications(engine)
    per_event = Counter(event_id for event_id, _ in applied)
    assert sorted(per_event) == events and set(per_event.values()) == {1}
    assert {worker for _, worker in applied} == {"w1", "w2"}
    assert {status(hub, e)[0] for e in events} == {"applied"}


class _Signalling:
    def __init__(self) -> None:
        self.applied = threading.Event()
        self.payloads: list[Mapping[str, Any]] = []

    def apply(self, provider: ProviderName, payload: Mapping[str, Any]) -> bool:
        self.payloads.append(payload)
        self.applied.set()
        return True


def test_the_app_applies_webhooks_in_the_background(database_url: str, tmp_path: Path) -> None:
    applier = _Signalling()
    with inbox_app(
        database_url, tmp_path / "data", applier=applier, background=True, webhook_poll_seconds=0.05
    ) as app:
        send(app, "evt_bg")
        assert applier.applied.wait(timeout=60)
        assert [p["id"] for p in applier.payloads] == ["evt_bg"]
