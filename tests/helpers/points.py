"""A points wallet on its own database and fake clock, and the ledger's invariants."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import func, select

from server_stub.clock import FakeClock
from server_stub.config import Settings
from server_stub.db import transaction
from server_stub.models import User
from server_stub.points_models import PointsEntry, PointsWallet
from server_stub.services.points.ledger import Kind
from server_stub.services.points.service import PointsService
from server_stub.wiring import Services, build_services

START = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


@dataclass
class PointsWorld:
    services: Services
    clock: FakeClock

    @property
    def points(self) -> PointsService:
        return self.services.points

    def new_user(self) -> str:
        with transaction(self.services.ctx.write) as session:
            user = User(
                email=f"wallet-{secrets.token_hex(4)}@example.com",
                password_hash="x",
                created_at=self.clock.now(),
            )
            session.add(user)
            session.flush()
            return user.id

    def grant(self, user_id: str, amount: int, *, days: float | None = None) -> None:
        expires = self.clock.now() + timedelta(days=days) if days is not None else None
        self.points.credit(user_id, amount, kind=Kind.GRANT, actor="system", expires_at=expires)

    def days(self, count: float) -> None:
        self.clock.advance(timedelta(days=count).total_seconds())

    def assert_consistent(self, user_id: str) -> None:
        assert_wallet_consistent(self.services, user_id)


def assert_wallet_consistent(services: Services, user_id: str) -> None:
    """The wallet's cached sums are the ledger's, its lots hold exactly the spendable balance,
    every transaction's legs sum to zero, and nothing is negative."""
    sums = services.points.ledger_sums(user_id)
    with transaction(services.ctx.read) as session:
        wallet = session.get(PointsWallet, user_id)
        unbalanced = session.scalars(
            select(PointsEntry.transaction_id)
            .where(PointsEntry.user_id == user_id)
            .group_by(PointsEntry.transaction_id)
            .having(func.sum(PointsEntry.amount) != 0)
        ).all()
    balance = wallet.balance if wallet else 0
    held = wallet.held if wallet else 0
    shortfall = wallet.shortfall if wallet else 0
    assert unbalanced == []
    assert sums.get("wallet", 0) == balance >= 0
    assert sums.get("held", 0) == held >= 0
    assert -sums.get("owed", 0) == shortfall >= 0
    assert sums["lots"] == balance


@contextmanager
def points_world(database_url: str, data_dir: Path) -> Iterator[PointsWorld]:
    clock = FakeClock(START)
    services = build_services(
        Settings(
            data_dir=data_dir,
            database_url=database_url,
            rate_limit_enabled=False,
            sweep_interval_seconds=3600,
        ),
        clock,
    )
    try:
        yield PointsWorld(services, clock)
    finally:
        services.ctx.engine.dispose()
