"""The webhook inbox under test: signed deliveries as the providers send them, an app whose
inbox has a fake applier and checker, and a worker process to kill (``python -m
tests.helpers.webhooks``)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from random import Random
from typing import Any
from urllib.parse import urlencode

import httpx
from sqlalchemy import Engine, text

from server_stub.app import create_app
from server_stub.clock import FakeClock
from server_stub.config import Settings
from server_stub.services.billing.contract import ProviderName
from server_stub.services.billing.signatures import cloudpayments_hmac, stripe_signature_header
from server_stub.services.webhooks import CheckCode, EventApplier, WebhookInbox
from server_stub.wiring import Services, build_services
from tests.helpers.live_server import LiveServer

STRIPE_SECRET = "whsec_" + "a" * 32
STRIPE_NEXT_SECRET = "whsec_" + "b" * 32
CP_SECRET = "cp-api-secret-" + "c" * 18


def stripe_event(event_id: str, created: int, kind: str = "invoice.paid", **data: Any) -> bytes:
    body = {"id": event_id, "object": "event", "type": kind, "created": created, "data": data}
    return json.dumps(body).encode()


def stripe_headers(body: bytes, timestamp: int, secret: str = STRIPE_SECRET) -> dict[str, str]:
    return {
        "Stripe-Signature": stripe_signature_header(secret, body, timestamp),
        "Content-Type": "application/json",
    }


def cp_form(transaction_id: str | int = 1001, **fields: Any) -> bytes:
    values = {
        "TransactionId": transaction_id,
        "Amount": "990.00",
        "Currency": "RUB",
        "InvoiceId": "inv-1",
        "AccountId": "sub-1",
        "DateTime": "2026-01-15 11:59:00",
        **fields,
    }
    return urlencode(values).encode()


def cp_headers(
    body: bytes,
    secret: str = CP_SECRET,
    header: str = "Content-HMAC",
    content_type: str = "application/x-www-form-urlencoded",
) -> dict[str, str]:
    return {header: cloudpayments_hmac(secret, body), "Content-Type": content_type}


@dataclass
class RecordingApplier:
    """Records each call; raises while ``fail_next`` > 0; ignores the types in ``ignore``."""

    calls: list[tuple[ProviderName, dict[str, Any]]] = field(default_factory=list)
    fail_next: int = 0
    ignore: frozenset[str] = frozenset()

    def apply(self, provider: ProviderName, payload: Mapping[str, Any]) -> bool:
        self.calls.append((provider, dict(payload)))
        if self.fail_next > 0:
            self.fail_next -= 1
            raise RuntimeError("billing is down")
        return payload.get("type") not in self.ignore


@dataclass
class FakeChecker:
    code: CheckCode = CheckCode.OK
    seen: list[dict[str, Any]] = field(default_factory=list)
    #: Raise instead of answering (billing down).
    broken: bool = False

    def check(self, payload: Mapping[str, Any]) -> CheckCode:
        self.seen.append(dict(payload))
        if self.broken:
            raise RuntimeError("billing is down")
        return self.code


@dataclass
class InboxApp:
    client: httpx.Client
    clock: FakeClock
    services: Services
    applier: RecordingApplier
    checker: FakeChecker

    @property
    def inbox(self) -> WebhookInbox:
        return self.services.webhooks

    def now(self) -> int:
        return int(self.clock.now().timestamp())


def with_inbox(services: Services, applier: EventApplier | None, **kwargs: Any) -> Services:
    """``services`` whose inbox applies with ``applier`` (how billing is wired in)."""
    inbox = WebhookInbox(services.ctx, applier=applier, rng=Random(7), **kwargs)
    return dataclasses.replace(services, webhooks=inbox)


def settings_for(database_url: str, data_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "database_url": database_url,
        "rate_limit_enabled": False,
        "sweep_interval_seconds": 3600,
        "stripe_webhook_secrets": STRIPE_SECRET,
        "cloudpayments_api_secret": CP_SECRET,
        **overrides,
    }
    return Settings(**values)


@contextmanager
def inbox_app(
    database_url: str,
    data_dir: Path,
    *,
    applier: EventApplier | None = None,
    background: bool = False,
    **overrides: Any,
) -> Iterator[InboxApp]:
    """A served app with a recording applier and checker; ``background``: with its sweeper and
    webhook worker (else the test drives the worker)."""
    settings = settings_for(database_url, data_dir, **overrides)
    clock = FakeClock()
    recording, checker = RecordingApplier(), FakeChecker()
    services = with_inbox(build_services(settings, clock), applier or recording, checker=checker)
    app = create_app(settings, services=services, sweeper=background)
    with LiveServer(app) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        try:
            yield InboxApp(client, clock, services, recording, checker)
        finally:
            services.ctx.engine.dispose()


# --- an applier that records its applications in the database -------------------------------

APPLICATIONS_DDL = (
    "CREATE TABLE IF NOT EXISTS test_applications (event_id VARCHAR(200), worker VARCHAR(100))"
)


def applications(engine: Engine) -> list[tuple[str, str]]:
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT event_id, worker FROM test_applications")).all()
    return [(str(r[0]), str(r[1])) for r in rows]


@dataclass
class DatabaseApplier:
    """Each apply inserts ``(event id, worker)`` in a transaction of its own.

    ``idempotent``: nothing is inserted when the event was applied before (billing's rule, by
    ``payment_ref``). ``before_commit`` / ``after_commit``: called inside the apply, before its
    transaction commits or after (where a test blocks or kills the worker).
    """

    engine: Engine
    worker: str
    idempotent: bool = False
    before_commit: Any = None
    after_commit: Any = None
    barrier: threading.Barrier | None = None

    def apply(self, provider: ProviderName, payload: Mapping[str, Any]) -> bool:
        event_id = str(payload["id"])
        if self.barrier is not None:
            self.barrier.wait(timeout=60)
            self.barrier = None
        with self.engine.begin() as conn:
            done = conn.execute(
                text("SELECT count(*) FROM test_applications WHERE event_id = :e"), {"e": event_id}
            ).scalar_one()
            if not (self.idempotent and done):
                conn.execute(
                    text("INSERT INTO test_applications VALUES (:e, :w)"),
                    {"e": event_id, "w": self.worker},
                )
            if self.before_commit is not None:
                self.before_commit()
        if self.after_commit is not None:
            self.after_commit()
        return True


def _block_forever() -> None:
    print("applying", flush=True)  # the parent kills us once it reads this
    threading.Event().wait()


def worker_main(argv: list[str] | None = None) -> None:
    """A worker process that claims the due events and blocks in the apply (until killed)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("database_url")
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("now", type=datetime.fromisoformat)
    parser.add_argument("--after-commit", action="store_true")
    args = parser.parse_args(argv)
    settings = settings_for(args.database_url, args.data_dir, run_migrations=False)
    services = build_services(settings, FakeClock(args.now))
    applier = DatabaseApplier(services.ctx.engine, "victim", idempotent=True)
    if args.after_commit:
        applier.after_commit = _block_forever
    else:
        applier.before_commit = _block_forever
    inbox = WebhookInbox(services.ctx, applier=applier, worker="victim")
    inbox.work_once()
    print("finished without blocking", flush=True)
    sys.exit(3)


if __name__ == "__main__":
    worker_main()
