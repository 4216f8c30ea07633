"""Billing for the server tests: a provider adapter that records what billing asks of it, a
billing service on its own database and fake clock, and provider events to apply."""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import delete, select

from server_stub.billing_models import BillingInvoice, BillingSubscription
from server_stub.clock import FakeClock
from server_stub.config import Settings
from server_stub.db import transaction
from server_stub.models import Base, Plan, Subscription, User
from server_stub.services.billing.contract import (
    ChargeOutcome,
    Checkout,
    EventKind,
    Interval,
    ProviderEvent,
    ProviderName,
    ProviderRefused,
    ProviderUnavailable,
    RefundOutcome,
)
from server_stub.services.billing.entitlement import entitled_now
from server_stub.services.billing.plans import PlanSpec
from server_stub.wiring import Services, build_services

_refs = itertools.count(1)
#: The fake clock's first instant in every billing world.
START = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)


@dataclass
class RecordingAdapter:
    """A :class:`~server_stub.services.billing.contract.ProviderAdapter` that records every call
    and answers a checkout with a URL of its own; ``fail_with`` makes the next call raise."""

    name: ProviderName = ProviderName.STRIPE
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    fail_with: type[Exception] | None = None
    #: What the next charges answer, in order (then: success); e.g. a soft or hard decline.
    charge_answers: list[ChargeOutcome] = field(default_factory=list)
    #: Answers already given, by idempotency key: a repeated key replays its answer, as a
    #: provider does.
    answered: dict[str, ChargeOutcome] = field(default_factory=dict)
    #: A decline code: the next ``charge`` is declined with it (a synchronous refusal).
    decline_next: str | None = None

    def _call(self, method: str, kwargs: dict[str, Any]) -> None:
        self.calls.append((method, kwargs))
        if self.fail_with is not None:
            error, self.fail_with = self.fail_with, None
            raise error(f"{method} failed on purpose")

    def create_checkout(self, **kwargs: Any) -> Checkout:
        self._call("create_checkout", kwargs)
        ref = f"cs_{next(_refs)}"
        return Checkout(url=f"https://pay.example/{self.name}/{ref}", checkout_ref=ref)

    def charge(self, **kwargs: Any) -> ChargeOutcome:
        self._call("charge", kwargs)
        key = kwargs["idempotency_key"]
        if key not in self.answered and self.decline_next is not None:
            code, self.decline_next = self.decline_next, None
            self.charge_answers.insert(0, ChargeOutcome(succeeded=False, decline_code=code))
        if key not in self.answered:
            self.answered[key] = (
                self.charge_answers.pop(0)
                if self.charge_answers
                else ChargeOutcome(succeeded=True, payment_ref=f"pi_{next(_refs)}")
            )
        return self.answered[key]

    def decline(self, count: int = 1, code: str = "insufficient_funds", hard: bool = False) -> None:
        """The next ``count`` charges are declined with ``code``."""
        self.charge_answers.extend(
            ChargeOutcome(succeeded=False, decline_code=code, hard_decline=hard)
            for _ in range(count)
        )

    def charges(self) -> list[dict[str, Any]]:
        return [kwargs for method, kwargs in self.calls if method == "charge"]

    def refund(self, **kwargs: Any) -> RefundOutcome:
        self._call("refund", kwargs)
        return RefundOutcome(f"re_{next(_refs)}", kwargs["amount_minor"], True)

    def payment_truth(self, invoice_id: str) -> list[ProviderEvent]:
        self._call("payment_truth", {"invoice_id": invoice_id})
        return []

    def undelivered_events(self, since: datetime) -> list[ProviderEvent]:
        self._call("undelivered_events", {"since": since})
        return []

    def parse_event(self, payload: Mapping[str, Any]) -> ProviderEvent | None:
        self._call("parse_event", {"payload": payload})
        return None

    def checkouts(self) -> list[dict[str, Any]]:
        return [kwargs for method, kwargs in self.calls if method == "create_checkout"]


__all__ = ["ProviderRefused", "ProviderUnavailable", "RecordingAdapter"]


def checkout_completed(invoice_id: str, at: datetime, amount_minor: int) -> ProviderEvent:
    """Stripe's report that the checkout of ``invoice_id`` was paid (the card "pm|cus" kept)."""
    return ProviderEvent(
        provider=ProviderName.STRIPE,
        event_id=f"evt-{invoice_id}",
        kind=EventKind.CHECKOUT_COMPLETED,
        occurred_at=at,
        invoice_id=invoice_id,
        payment_ref=f"pi-{invoice_id}",
        payment_method_ref="pm|cus",
        amount_minor=amount_minor,
        currency="RUB",
    )


PRO = PlanSpec(
    name="pro",
    monthly_quota=5000,
    max_devices=3,
    features=("broadcast",),
    price_minor=99_000,
    rank=2,
)
TRIAL = PlanSpec(
    name="trial-pro", monthly_quota=500, max_devices=1, price_minor=49_000, trial_days=14, rank=1
)
YEARLY = PlanSpec(
    name="pro-year",
    monthly_quota=5000,
    max_devices=3,
    price_minor=990_000,
    interval=Interval.YEAR,
    rank=2,
)


@dataclass
class BillingWorld:
    """A billing service on its own database, with a fake clock and a recording adapter."""

    services: Services
    clock: FakeClock
    adapter: RecordingAdapter

    @property
    def billing(self) -> Any:
        return self.services.billing

    def reset(self) -> None:
        """Back to the start: the clock at its first instant, no billing rows and no
        entitlements (plans and users stay), so a run does not depend on the runs before it
        (hypothesis replays and shrinks a failure only if each example starts alike)."""
        self.clock.set(START)
        tables = [t for t in Base.metadata.sorted_tables if t.name.startswith("billing_")]
        with transaction(self.services.ctx.write) as session:
            for table in reversed([*tables, Subscription.__table__]):
                session.execute(delete(table))

    def new_user(self) -> str:
        email = f"payer-{secrets.token_hex(4)}@example.com"
        now = self.clock.now()
        with transaction(self.services.ctx.write) as session:
            user = User(email=email, password_hash="x", created_at=now)
            session.add(user)
            session.flush()
            return user.id

    def subscribe(self, user_id: str, plan: str = "pro") -> tuple[str, str]:
        """A new checkout: the subscription's and the invoice's ids."""
        created = self.billing.create_subscription(user_id, plan, self.adapter.name)
        return created.subscription.id, created.invoice_id

    def event(self, kind: EventKind, invoice_id: str | None = None, **fields: Any) -> ProviderEvent:
        fields.setdefault("occurred_at", self.clock.now())
        fields.setdefault("event_id", f"evt_{next(_refs)}")
        return ProviderEvent(provider=self.adapter.name, kind=kind, invoice_id=invoice_id, **fields)

    def pay(self, invoice_id: str, kind: EventKind = EventKind.CHECKOUT_COMPLETED) -> str:
        """The provider reports the invoice paid; returns the payment's ref."""
        ref = f"pi_{next(_refs)}"
        amount = self.invoice(invoice_id).amount_due_minor
        self.billing.apply_event(
            self.event(
                kind,
                invoice_id,
                payment_ref=ref,
                amount_minor=amount,
                currency="RUB",
                payment_method_ref="pm_1|cus_1",
            )
        )
        return ref

    def sub(self, sub_id: str) -> BillingSubscription:
        with transaction(self.services.ctx.read) as session:
            row = session.get(BillingSubscription, sub_id)
            assert row is not None
            return row

    def invoice(self, invoice_id: str) -> BillingInvoice:
        with transaction(self.services.ctx.read) as session:
            row = session.get(BillingInvoice, invoice_id)
            assert row is not None
            return row

    def invoices(self, sub_id: str) -> list[BillingInvoice]:
        with transaction(self.services.ctx.read) as session:
            return list(
                session.scalars(
                    select(BillingInvoice).where(BillingInvoice.subscription_id == sub_id)
                )
            )

    def entitled(self, user_id: str, at: datetime | None = None) -> bool:
        with transaction(self.services.ctx.read) as session:
            return entitled_now(session, user_id, at or self.clock.now())

    def plan(self, name: str) -> Plan:
        with transaction(self.services.ctx.read) as session:
            plan = session.scalar(select(Plan).where(Plan.name == name))
            assert plan is not None
            return plan

    def days(self, count: float) -> None:
        self.clock.advance(timedelta(days=count).total_seconds())


@contextmanager
def billing_world(database_url: str, data_dir: Path, **settings: Any) -> Iterator[BillingWorld]:
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "database_url": database_url,
        "rate_limit_enabled": False,
        "sweep_interval_seconds": 3600,
        **settings,
    }
    clock = FakeClock(START)
    services = build_services(Settings(**values), clock)
    adapter = RecordingAdapter()
    services.billing.add_adapter(adapter)
    for spec in (PRO, TRIAL, YEARLY):
        services.billing.plans.create("test", spec)
    try:
        yield BillingWorld(services, clock, adapter)
    finally:
        services.ctx.engine.dispose()
