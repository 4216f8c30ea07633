"""The webhook inbox (docs/billing.md, "Webhooks: one inbox"): every provider webhook that
passed its signature check, stored raw, deduplicated by ``(provider, event_id)``, and the durable
queue its worker applies from (services/webhooks/).

Kept apart from :mod:`server_stub.models`, which imports this module at its end so that
``Base.metadata`` always holds the whole schema.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    CheckConstraint,
    Index,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from agent.protocol import ProviderName

from .models import Base, UTCDateTime, one_of

#: ``queued`` waits for its first attempt; ``failed`` waits for a retry; ``applied`` and
#: ``ignored`` (billing does not act on it) are done; ``dead`` ran out of attempts and waits for
#: an operator's redrive.
WEBHOOK_STATUSES = ("queued", "applied", "failed", "dead", "ignored")
#: What the worker may claim.
WEBHOOK_PENDING = ("queued", "failed")
WEBHOOK_PROVIDERS = tuple(provider.value for provider in ProviderName)


class WebhookEvent(Base):
    """One provider event as it arrived, and where it stands in the queue.

    ``attempts`` counts claims (a claim is an attempt, whether it ends or its worker dies) and is
    the lease's token: a worker records an outcome only while the row still carries its claim.
    """

    __tablename__ = "webhook_inbox"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    provider: Mapped[str] = mapped_column(String(32))
    #: The provider's own event id (Stripe ``evt_…``; CloudPayments ``<TransactionId>:<kind>``;
    #: RuStore the notification's ``id``).
    event_id: Mapped[str] = mapped_column(String(200))
    #: Stripe's event ``type``; CloudPayments' notification kind (``pay``, ``refund``, …).
    kind: Mapped[str] = mapped_column(String(64))
    #: The body exactly as signed (bytes: the signature covers them, not a re-encoding).
    body: Mapped[bytes] = mapped_column(LargeBinary)
    #: The body read into JSON (form fields for CloudPayments) plus the kind: what the applier
    #: gets. Kept beside ``body`` so the worker need not parse again.
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    #: The headers that matter: the content type and the signature header as received (an HMAC
    #: of the body, not a secret).
    headers: Mapped[dict[str, Any]] = mapped_column(JSON)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
    #: The provider's time of the event, when the body says it (Stripe ``created``,
    #: CloudPayments ``DateTime``).
    event_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    #: When a pending row is due; a claim moves it one lease ahead (lease expiry = reclaim).
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    last_error: Mapped[str | None] = mapped_column(String(500), nullable=True)
    claimed_by: Mapped[str | None] = mapped_column(String(100), nullable=True)
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    #: When it was applied or found to be of no interest (``applied``/``ignored``).
    applied_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    __table_args__ = (
        UniqueConstraint("provider", "event_id", name="uq_webhook_inbox_provider_event"),
        CheckConstraint(one_of("status", WEBHOOK_STATUSES), name="status_known"),
        CheckConstraint(
            one_of("provider", WEBHOOK_PROVIDERS),
            name="provider_known",
        ),
        Index("ix_webhook_inbox_due", "status", "next_attempt_at", "seq"),
        Index("ix_webhook_inbox_received", "received_at"),
    )
