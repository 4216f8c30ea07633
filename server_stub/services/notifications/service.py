"""The notifications facade: the Admin's channel setting, the outbox for the operator, a test
message, a redrive, and the two sweeps (expiry scan, delivery)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal

from sqlalchemy import select

from ...db import transaction
from ...errors import NotFound, ValidationFailed
from ...portal_models import Notification, PortalSetting
from ..audit.chain import record
from ..context import ServiceContext
from . import SETTING_KEY, expiry
from .channels import DeliveryFailed, Sender, build_senders
from .delivery import SWEEP_LIMIT, OutboxDelivery
from .messages import TEST_KIND, render
from .targets import Targets, check_targets, load_targets, secrets_present

OutboxStatus = Literal["pending", "delivered", "failed"]
MAX_PAGE: Final = 200


@dataclass(frozen=True)
class OutboxPage:
    rows: list[Notification]
    next_cursor: str | None


@dataclass(frozen=True)
class TestResult:
    channel: str
    delivered: bool
    error: str | None


class NotificationService:
    def __init__(self, ctx: ServiceContext, senders: dict[str, Sender] | None = None) -> None:
        self._ctx = ctx
        self._senders = senders or build_senders(ctx.settings, ctx.clock)
        self._delivery = OutboxDelivery(ctx, self._senders, SETTING_KEY)

    # --- the sweeps -----------------------------------------------------------------------------

    def scan_expiry(self) -> int:
        """Enqueue the expiry warnings and notices now due; returns how many rows were added."""
        now = self._ctx.clock.now()
        with transaction(self._ctx.write) as session:
            return expiry.scan(session, now)

    def deliver_due(self, limit: int = SWEEP_LIMIT) -> int:
        """Attempt each due row once (at most ``limit``); returns how many were delivered."""
        return self._delivery.deliver_due(limit)

    # --- the Admin's setting --------------------------------------------------------------------

    def targets(self) -> Targets:
        with transaction(self._ctx.read) as session:
            return load_targets(session, SETTING_KEY)

    def secrets_present(self) -> dict[str, bool]:
        return secrets_present(self._ctx.settings)

    def set_targets(self, actor: str, targets: Targets) -> Targets:
        check_targets(targets, self._ctx.settings)
        now = self._ctx.clock.now()
        value = targets.as_json()
        with transaction(self._ctx.write) as session:
            row = session.get(PortalSetting, SETTING_KEY)
            before = row.value if row is not None else None
            if row is None:
                session.add(
                    PortalSetting(key=SETTING_KEY, value=value, updated_by=actor, updated_at=now)
                )
            else:
                row.value, row.updated_by, row.updated_at = value, actor, now
            # Recipients are named in the audit (who was told); secrets never reach the setting.
            record(
                session,
                now,
                actor,
                "notifications.settings",
                f"settings/{SETTING_KEY}",
                {"before": before, "after": value},
            )
        return targets

    def send_test(self, actor: str, channel: str) -> TestResult:
        """Send a test message on ``channel`` now (it must be on); audited."""
        targets = self.targets()
        if channel not in targets.channels:
            raise ValidationFailed(f"channel {channel} is not turned on in the setting")
        message = render(TEST_KIND, None, {}, targets.language, channel=channel)
        error: str | None = None
        try:
            self._senders[channel].send(message, targets)
        except DeliveryFailed as exc:
            error = exc.reason
        with transaction(self._ctx.write) as session:
            record(
                session,
                self._ctx.clock.now(),
                actor,
                "notifications.test",
                f"settings/{SETTING_KEY}",
                {"channel": channel, "delivered": error is None, "error": error},
            )
        return TestResult(channel, error is None, error)

    # --- the outbox -----------------------------------------------------------------------------

    def outbox(
        self,
        *,
        status: OutboxStatus | None = None,
        kind: str | None = None,
        channel: str | None = None,
        license_id: str | None = None,
        cursor: int | None = None,
        limit: int = 100,
    ) -> OutboxPage:
        """The outbox, newest first, ``limit`` rows after ``cursor`` (a ``seq``)."""
        query = select(Notification).order_by(Notification.seq.desc()).limit(limit + 1)
        if status == "delivered":
            query = query.where(Notification.delivered_at.is_not(None))
        elif status == "failed":
            query = query.where(Notification.failed_at.is_not(None))
        elif status == "pending":
            query = query.where(
                Notification.delivered_at.is_(None), Notification.failed_at.is_(None)
            )
        conditions: list[Any] = []
        if kind is not None:
            conditions.append(Notification.kind == kind)
        if channel is not None:
            conditions.append(Notification.channel == channel)
        if license_id is not None:
            conditions.append(Notification.license_id == license_id)
        if cursor is not None:
            conditions.append(Notification.seq < cursor)
        with transaction(self._ctx.read) as session:
            rows = list(session.scalars(query.where(*conditions)))
        more = len(rows) > limit
        rows = rows[:limit]
        return OutboxPage(rows, str(rows[-1].seq) if more and rows else None)

    def redrive(self, actor: str, seq: int) -> Notification:
        """Give a dead-lettered row a fresh set of attempts, due now; audited."""
        now = self._ctx.clock.now()
        with transaction(self._ctx.write) as session:
            row = session.scalar(
                select(Notification).where(Notification.seq == seq).with_for_update()
            )
            if row is None:
                raise NotFound(f"no notification {seq}")
            if row.failed_at is None:
                raise ValidationFailed("only a failed (dead-lettered) notification can be redriven")
            failed_at: datetime = row.failed_at
            # ``attempts`` restarts: the dead row holds no lease, so no sweeper's token is live.
            previous = row.attempts
            row.failed_at = None
            row.attempts = 0
            row.next_attempt_at = now
            record(
                session,
                now,
                actor,
                "notification.redrive",
                f"notifications/{seq}",
                {"attempts": previous, "failed_at": failed_at.isoformat()},
            )
            return row
