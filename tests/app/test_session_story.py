"""The session log tells the story: sign-in (failed and not), broadcast start and finish with
counts, flood events, sign-out, and one access line per request (method, route, status; never
a secret)."""

from __future__ import annotations

import logging

import pytest

from agent.errors import InvalidCredentials
from app.selftest import QuietObserver
from app.transports.base import FloodWait
from tests.helpers.desktop import Desktop


def test_the_log_tells_the_session_story(
    desktop: Desktop, caplog: pytest.LogCaptureFixture
) -> None:
    core = desktop.core
    assert core is not None
    email, password = desktop.backend.email, desktop.backend.password
    caplog.set_level(logging.INFO, logger="tgflow")

    with pytest.raises(InvalidCredentials):
        desktop.run(core.sign_in(email, "a wrong password"))
    desktop.sign_in()
    account = desktop.add_account()
    recipients = [f"@story_{i}" for i in range(5)]
    broadcast_id = desktop.call(
        lambda: core.create_broadcast(account.account_id, "Hello", recipients)
    )
    desktop.network.script(account.account_id, FloodWait(42), at=2)
    desktop.run(core.run_broadcast(broadcast_id, QuietObserver()))
    desktop.run(core.sign_out())

    lines = [record.getMessage() for record in caplog.records]
    story = "\n".join(lines)
    assert f"sign-in as {email} failed" in story
    assert "POST /auth/login → 401" in story
    assert f"signed in as {email}" in story
    assert "POST /auth/login → 200" in story
    assert "GET /license → 200" in story
    assert f"broadcast {broadcast_id} started on {account.display_name}: 5 to send" in story
    assert f"broadcast {broadcast_id} finished: 5 sent, 0 failed, 0 left" in story
    assert f"account {account.account_id}: cooldown until " in story  # the flood event
    assert "(FloodWait 42 s)" in story
    assert f"signed out {email}" in story
    assert password not in story and "a wrong password" not in story
    assert not any("?" in line for line in lines if " → " in line)  # no query strings
