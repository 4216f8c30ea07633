"""The ``Idempotency-Key`` store of money-moving POSTs (docs/billing.md, "Idempotency-Key").

Apart from ``idempotency_keys`` (the usage API's ``correlation_id``, which remembers a
reservation rather than a response). Imported at the end of :mod:`server_stub.models`, so
``Base.metadata`` holds it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, CheckConstraint, Index, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from .models import Base, UTCDateTime

#: ``in_progress``: claimed, its request runs (or ran and died: see ``lease_until``);
#: ``done``: the first response is stored and is replayed until ``expires_at``.
IDEMPOTENCY_STATES = ("in_progress", "done")


class HttpIdempotency(Base):
    """One ``Idempotency-Key`` of one caller, and the first response given to it."""

    __tablename__ = "http_idempotency"

    #: Whose key it is (``staff:<id>``, ``user:<id>``, ``external``): callers never collide.
    scope: Mapped[str] = mapped_column(String(100), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    #: SHA-256 of method, path, query and canonical body: another request under the key is a
    #: conflict, not a replay.
    fingerprint: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))
    #: The claim's holder: only it may store the outcome or let the key go. A new holder (the
    #: lease ran out, or the key expired) gets a new token, so a late first holder writes nothing.
    token: Mapped[str] = mapped_column(String(36))
    #: While ``in_progress``: when a holder that crashed stops blocking the key.
    lease_until: Mapped[datetime] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    #: 24 h after the claim: from then on the key is new again, and the sweeper prunes it.
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    headers: Mapped[dict[str, str] | None] = mapped_column(JSON, nullable=True)
    body: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)

    __table_args__ = (
        CheckConstraint(
            "state IN (" + ", ".join(f"'{s}'" for s in IDEMPOTENCY_STATES) + ")", name="state"
        ),
        Index("ix_http_idempotency_expires_at", "expires_at"),
    )
