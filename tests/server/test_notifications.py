"""Notifications over HTTP on SQLite and PostgreSQL: the Admin's setting, the expiry scan, and
delivery to real-protocol fakes of SMTP, a webhook and the Telegram Bot API (fake clock, no
sleeps)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest

from server_stub.app import _sweep_forever
from server_stub.services.staff import Role
from tests.helpers.api import assert_problem
from tests.helpers.backend import Backend, BackendFactory
from tests.helpers.fake_channels import (
    BOT_TOKEN,
    SMTP_PASSWORD,
    WEBHOOK_SECRET,
    FakeSmtpServer,
    FakeTelegram,
    FakeWebhook,
)
from tests.helpers.portal_seed import Portal
from tests.helpers.staff import StaffLogin, new_staff

KEY = "TGF-0000-1111-2222-ABCD"
CHAT = "-1001234567890"


@dataclass
class Fakes:
    smtp: FakeSmtpServer
    hook: FakeWebhook
    telegram: FakeTelegram


@dataclass
class Setup:
    backend: Backend
    admin: StaffLogin
    portal: Portal
    fakes: Fakes

    def relogin(self) -> None:
        """A fresh Admin login (staff tokens expire as the fake clock moves days ahead)."""
        b = self.backend
        self.admin = new_staff(b.client, b.services, b.clock, Role.ADMIN)

    def put(self, **setting: Any) -> Any:
        return self.backend.client.put(
            "/staff/notifications/settings", headers=self.admin.headers, json=setting
        )

    def outbox(self, **query: Any) -> list[dict[str, Any]]:
        r = self.backend.client.get(
            "/staff/notifications/outbox", headers=self.admin.headers, params=query
        )
        assert r.status_code == 200, r.text
        rows: list[dict[str, Any]] = r.json()["rows"]
        return rows

    def scan(self) -> int:
        return self.backend.services.notifications.scan_expiry()

    def deliver(self) -> int:
        return self.backend.services.notifications.deliver_due()


@pytest.fixture
def fakes() -> Iterator[Fakes]:
    with FakeSmtpServer() as smtp, FakeWebhook() as hook, FakeTelegram() as telegram:
        yield Fakes(smtp, hook, telegram)


def channel_settings(f: Fakes) -> dict[str, object]:
    return {
        "notify_smtp_host": "127.0.0.1",
        "notify_smtp_port": f.smtp.port,
        "notify_smtp_starttls": False,
        "notify_smtp_username": "robot",
        "notify_smtp_password": SMTP_PASSWORD,
        "notify_smtp_from": "licenses@vendor.example",
        "notify_webhook_url": f.hook.url,
        "notify_webhook_secret": WEBHOOK_SECRET,
        "notify_telegram_bot_token": BOT_TOKEN,
        "notify_telegram_api_base": f.telegram.base_url,
        "notify_max_attempts": 3,
    }


@pytest.fixture
def setup(make_backend: BackendFactory, fakes: Fakes) -> Setup:
    backend = make_backend(**channel_settings(fakes))
    admin = new_staff(backend.client, backend.services, backend.clock, Role.ADMIN)
    portal = Portal(backend.services.ctx.write, backend.clock.now())
    portal.product()
    return Setup(backend, admin, portal, fakes)


ALL = {
    "channels": ["smtp", "webhook", "telegram"],
    "smtp_to": ["ops@vendor.example"],
    "telegram_chat_ids": [CHAT],
}


def test_an_expiry_warning_reaches_every_channel_once(setup: Setup) -> None:
    assert setup.put(**ALL).status_code == 200
    now = setup.backend.clock.now()
    client = setup.portal.client("ООО Ромашка")
    setup.portal.license(client, now + timedelta(days=20), key=KEY)
    setup.portal.license(client, now + timedelta(days=90))  # nothing due yet
    assert setup.scan() == 3
    assert setup.scan() == 0  # deduplicated
    assert [r["kind"] for r in setup.outbox()] == ["expiring_30"] * 3
    assert setup.deliver() == 3 and setup.deliver() == 0

    (mail,) = setup.fakes.smtp.mails
    assert mail.rcpt_to == ["ops@vendor.example"] and mail.auth == ("robot", SMTP_PASSWORD)
    assert mail.message["Subject"] == "TGFlow: Лицензия скоро истекает"
    body = mail.message.get_content()
    assert "ООО Ромашка" in body and "…ABCD" in body and KEY not in body
    assert (now + timedelta(days=20)).strftime("%d.%m.%Y") in body

    (hit,) = setup.fakes.hook.hits
    sent = hit.json()
    assert sent["event"] == "expiring_30" and sent["license"]["key_last4"] == "ABCD"
    assert KEY not in hit.body.decode()
    stamp = hit.headers["x-tgflow-timestamp"]
    expected = hmac.new(WEBHOOK_SECRET.encode(), stamp.encode() + b"." + hit.body, hashlib.sha256)
    assert hit.headers["x-tgflow-signature"] == "sha256=" + expected.hexdigest()
    assert int(stamp) == int(now.timestamp())

    (message,) = setup.fakes.telegram.sent()
    assert message["chat_id"] == CHAT and "…ABCD" in message["text"]
    assert {r["status"] for r in setup.outbox()} == {"delivered"}
    assert setup.outbox(status="pending") == []


def test_thresholds_are_crossed_one_by_one_and_a_renewal_rearms_them(setup: Setup) -> None:
    assert setup.put(channels=["webhook"], webhook_style="slack", language="en").is_success
    clock = setup.backend.clock
    client = setup.portal.client("Acme")
    license_id = setup.portal.license(client, clock.now() + timedelta(days=40), key=KEY)
    assert setup.scan() == 0
    clock.advance(timedelta(days=10, hours=1).total_seconds())  # 29 days left
    assert setup.scan() == 1
    clock.advance(timedelta(days=23).total_seconds())  # 6 days left: the 7-day warning only
    assert setup.scan() == 1 and setup.scan() == 0
    clock.advance(timedelta(days=6).total_seconds())  # 23 hours left
    assert setup.scan() == 1
    clock.advance(timedelta(days=1).total_seconds())
    assert setup.scan() == 1
    setup.relogin()
    kinds = [r["kind"] for r in reversed(setup.outbox())]
    assert kinds == ["expiring_30", "expiring_7", "expiring_1", "expired"]
    assert setup.deliver() == 4
    texts = [h.json() for h in setup.fakes.hook.hits]
    assert all(set(t) == {"text"} for t in texts)  # Slack-style
    assert "expired on" in texts[-1]["text"] and "Acme" in texts[-1]["text"]

    # A renewal moves valid_until: the warnings are armed again.
    setup.portal.update(license_id, valid_until=clock.now() + timedelta(days=25))
    assert setup.scan() == 1
    assert setup.outbox()[0]["kind"] == "expiring_30"
    # Revoked licenses are not warned about.
    other = setup.portal.license(client, clock.now() + timedelta(days=3), status="revoked")
    assert setup.scan() == 0 and other


def test_retries_back_off_dead_letter_and_an_admin_redrives(setup: Setup) -> None:
    assert setup.put(channels=["telegram"], telegram_chat_ids=[CHAT]).is_success
    clock, telegram = setup.backend.clock, setup.fakes.telegram
    setup.portal.license(setup.portal.client(), clock.now() + timedelta(days=1), key=KEY)
    assert setup.scan() == 1
    telegram.queue_rate_limit(120)
    assert setup.deliver() == 0
    (row,) = setup.outbox()
    assert row["attempts"] == 1 and row["status"] == "pending"
    assert "429 Too Many Requests: retry after 120" in row["last_error"]
    # The bot asked for 120 s, more than the 30 s backoff: nothing is due before.
    clock.advance(119)
    assert setup.deliver() == 0 and len(telegram.hits) == 1
    clock.advance(1)
    telegram.queue(500, {"ok": False, "error_code": 500, "description": "Internal Server Error"})
    assert setup.deliver() == 0 and len(telegram.hits) == 2
    clock.advance(59)  # the second failure waits 60 s
    assert setup.deliver() == 0 and len(telegram.hits) == 2
    clock.advance(1)
    telegram.queue(
        400, {"ok": False, "error_code": 400, "description": "Bad Request: chat not found"}
    )
    assert setup.deliver() == 0
    (row,) = setup.outbox(status="failed")
    assert row["attempts"] == 3 and row["next_attempt_at"] is None
    assert row["last_error"] == "telegram: 400 Bad Request: chat not found"
    clock.advance(7200)
    assert setup.deliver() == 0 and len(telegram.hits) == 3  # dead: never attempted again
    failed = setup.backend.services.audit.search(action="notification.failed").entries
    assert [e.object for e in failed] == [f"notifications/{row['seq']}"]

    setup.relogin()
    sales = new_staff(setup.backend.client, setup.backend.services, clock, Role.SALES)
    url = f"/staff/notifications/outbox/{row['seq']}/redrive"
    assert_problem(setup.backend.client.post(url, headers=sales.headers), 403, "forbidden")
    r = setup.backend.client.post(url, headers=setup.admin.headers)
    assert r.status_code == 200 and r.json()["status"] == "pending", r.text
    assert r.json()["attempts"] == 0
    again = setup.backend.client.post(url, headers=setup.admin.headers)
    assert_problem(again, 422, "validation_error")
    missing = "/staff/notifications/outbox/999999/redrive"
    assert_problem(
        setup.backend.client.post(missing, headers=setup.admin.headers), 404, "not_found"
    )
    assert setup.deliver() == 1 and len(telegram.sent()) == 4
    redriven = setup.backend.services.audit.search(action="notification.redrive").entries
    assert [e.actor for e in redriven] == [f"staff:{setup.admin.id}"]


def test_smtp_failures_are_retried_and_starttls_is_never_skipped(
    make_backend: BackendFactory, fakes: Fakes
) -> None:
    backend = make_backend(**{**channel_settings(fakes), "notify_smtp_starttls": True})
    admin = new_staff(backend.client, backend.services, backend.clock, Role.ADMIN)
    setting = {"channels": ["smtp"], "smtp_to": ["ops@vendor.example"]}
    r = backend.client.post(
        "/staff/notifications/test", headers=admin.headers, json={"channel": "smtp"}
    )
    assert_problem(r, 422, "validation_error")  # not turned on yet
    put = backend.client.put("/staff/notifications/settings", headers=admin.headers, json=setting)
    assert put.status_code == 200, put.text
    # The fake offers no STARTTLS: the message is not sent in clear text.
    r = backend.client.post(
        "/staff/notifications/test", headers=admin.headers, json={"channel": "smtp"}
    )
    assert r.status_code == 200 and r.json()["delivered"] is False, r.text
    assert "STARTTLS" in r.json()["error"] and fakes.smtp.mails == []


def test_a_test_message_and_a_transient_smtp_refusal(setup: Setup) -> None:
    assert setup.put(**ALL).is_success
    for channel in ("smtp", "webhook", "telegram"):
        r = setup.backend.client.post(
            "/staff/notifications/test", headers=setup.admin.headers, json={"channel": channel}
        )
        assert r.status_code == 200 and r.json() == {
            "channel": channel,
            "delivered": True,
            "error": None,
        }, r.text
    assert "канал smtp" in setup.fakes.smtp.mails[0].message.get_content()
    tests = setup.backend.services.audit.search(action="notifications.test").entries
    assert len(tests) == 3

    setup.portal.license(setup.portal.client(), setup.backend.clock.now() - timedelta(hours=1))
    assert setup.scan() == 3
    setup.fakes.smtp.refuse.append("451 4.3.0 try again later")
    assert setup.deliver() == 2
    (row,) = setup.outbox(status="pending")
    assert row["channel"] == "smtp" and "451" in row["last_error"]
    setup.backend.clock.advance(30)
    assert setup.deliver() == 1 and len(setup.fakes.smtp.mails) == 2


def test_a_channel_without_its_secret_or_recipients_is_refused(
    make_backend: BackendFactory, fakes: Fakes
) -> None:
    settings = channel_settings(fakes)
    del settings["notify_telegram_bot_token"], settings["notify_webhook_url"]
    backend = make_backend(**settings)
    admin = new_staff(backend.client, backend.services, backend.clock, Role.ADMIN)

    def put(body: Any) -> Any:
        return backend.client.put("/staff/notifications/settings", headers=admin.headers, json=body)

    body = assert_problem(
        put({"channels": ["telegram"], "telegram_chat_ids": [CHAT]}), 422, "validation_error"
    )
    assert "TGFLOW_NOTIFY_TELEGRAM_BOT_TOKEN" in body["detail"]
    body = assert_problem(put({"channels": ["webhook"]}), 422, "validation_error")
    assert "TGFLOW_NOTIFY_WEBHOOK_URL" in body["detail"]
    body = assert_problem(put({"channels": ["smtp"]}), 422, "validation_error")
    assert "smtp_to" in body["detail"]
    for bad in (
        {"channels": ["fax"]},
        {"channels": ["smtp"], "smtp_to": ["not an address"]},
        {"telegram_chat_ids": ["12; DROP TABLE"]},
        {"language": "de"},
        {"channels": [], "surprise": 1},
        {"smtp_to": ["a@b.example"] * 21},
    ):
        assert_problem(put(bad), 422, "validation_error")
    got = backend.client.get("/staff/notifications/settings", headers=admin.headers).json()
    assert got["channels"] == [] and got["secrets_present"] == {
        "smtp": True,
        "webhook": False,
        "telegram": False,
    }
    for query in ({"status": "lost"}, {"cursor": "x"}, {"limit": 0}, {"kind": "nope"}):
        r = backend.client.get("/staff/notifications/outbox", headers=admin.headers, params=query)
        assert_problem(r, 422, "validation_error")
    assert backend.services.audit.search(action="notifications.settings").entries == []


def test_no_secret_reaches_a_log_or_a_reply(setup: Setup, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    assert setup.put(**ALL).is_success
    setup.portal.license(
        setup.portal.client(), setup.backend.clock.now() + timedelta(days=5), key=KEY
    )
    assert setup.scan() == 3
    setup.fakes.telegram.queue(401, {"ok": False, "error_code": 401, "description": "Unauthorized"})
    setup.fakes.hook.queue(503, {"error": "down"})
    assert setup.deliver() == 1
    setup.backend.clock.advance(30)
    assert setup.deliver() == 2
    replies = [
        setup.backend.client.get("/staff/notifications/settings", headers=setup.admin.headers).text,
        setup.backend.client.get("/staff/notifications/outbox", headers=setup.admin.headers).text,
        setup.put(**ALL).text,
    ]
    audit = [str(e.details) for e in setup.backend.services.audit.search().entries]
    seen = "\n".join([caplog.text, *replies, *audit])
    assert "sendMessage" in caplog.text  # httpx did log the requests...
    for secret in (BOT_TOKEN, WEBHOOK_SECRET, SMTP_PASSWORD, setup.fakes.hook.url, KEY):
        assert secret not in seen, secret  # ...with the token masked


def test_an_event_of_other_helpers_is_rendered_without_the_full_key(setup: Setup) -> None:
    from server_stub.db import transaction
    from server_stub.services.notifications import enqueue

    assert setup.put(channels=["telegram"], telegram_chat_ids=[CHAT], language="en").is_success
    license_id = setup.portal.license(
        setup.portal.client("Beta LLC"), setup.backend.clock.now() + timedelta(days=200), key=KEY
    )
    with transaction(setup.backend.services.ctx.write) as session:
        for _ in range(2):
            enqueue(
                session,
                kind="limit_exceeded",
                license_id=license_id,
                dedupe=f"{license_id}:activations",
                payload={"limit": "activations", "license_key": KEY},
                now=setup.backend.clock.now(),
            )
    assert setup.deliver() == 1
    (message,) = setup.fakes.telegram.sent()
    assert (
        message["text"] == "The license of «Beta LLC» (key …ABCD) exceeded its activations limit."
    )


def test_the_periodic_sweeper_scans_and_delivers(setup: Setup) -> None:
    assert setup.put(channels=["webhook"]).is_success
    setup.portal.license(setup.portal.client(), setup.backend.clock.now() + timedelta(days=7))
    notifications = setup.backend.services.notifications
    delivered = threading.Event()
    original = notifications.deliver_due

    def observed(limit: int = 50) -> int:
        count = original(limit)
        if count:
            delivered.set()
        return count

    notifications.deliver_due = observed  # type: ignore[method-assign]

    async def run_until_delivered() -> None:
        task = asyncio.create_task(_sweep_forever(setup.backend.services, 0.01))
        try:
            assert await asyncio.to_thread(delivered.wait, 30), "the sweeper never delivered"
        finally:
            task.cancel()

    asyncio.run(run_until_delivered())
    (hit,) = setup.fakes.hook.hits
    assert hit.json()["event"] == "expiring_7"


def test_a_webhook_asking_to_wait_is_honoured(setup: Setup) -> None:
    assert setup.put(channels=["webhook"]).is_success
    setup.portal.license(setup.portal.client(), setup.backend.clock.now() + timedelta(days=30))
    assert setup.scan() == 1
    setup.fakes.hook.queue(429, {"error": "slow down"}, {"Retry-After": "600"})
    assert setup.deliver() == 0
    setup.backend.clock.advance(599)  # past the 30 s backoff, short of what the receiver asked
    assert setup.deliver() == 0 and len(setup.fakes.hook.hits) == 1
    setup.backend.clock.advance(1)
    assert setup.deliver() == 1 and len(setup.fakes.hook.hits) == 2
