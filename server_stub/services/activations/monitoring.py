"""Staff monitoring of activations: the filtered, cursor-paginated list and a manual
deactivation (``GET /staff/activations``, ``POST /staff/activations/{id}/deactivate``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from ...errors import NotFound, ValidationFailed
from ...portal_models import Activation, License
from ..audit import record
from .limits import activation_object

MAX_PAGE = 500


@dataclass(frozen=True)
class ActivationPage:
    rows: list[tuple[Activation, License]]
    next_cursor: str | None


def _cursor(row: Activation) -> str:
    micros = int(row.activated_at.timestamp() * 1_000_000)
    return f"{micros}.{row.id}"


def _parse_cursor(cursor: str) -> tuple[datetime, str]:
    # The router admits at most 17 digits (before year 5138), so any it admits is a time.
    micros, _, activation_id = cursor.partition(".")
    try:
        at = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=int(micros))
    except (ValueError, OverflowError):
        raise ValidationFailed("the cursor is not one this server gave") from None
    return at, activation_id


def search(
    session: Session,
    *,
    license_id: str | None,
    client_id: str | None,
    live: bool | None,
    cursor: str | None,
    limit: int,
) -> ActivationPage:
    """Newest activation first. ``live``: not deactivated (the sweeper and every activation of
    the license free the dead ones)."""
    query = select(Activation, License).join(License, License.id == Activation.license_id)
    if license_id is not None:
        query = query.where(Activation.license_id == license_id)
    if client_id is not None:
        query = query.where(License.client_id == client_id)
    if live is not None:
        query = query.where(
            Activation.deactivated_at.is_(None) if live else Activation.deactivated_at.is_not(None)
        )
    if cursor is not None:
        at, activation_id = _parse_cursor(cursor)
        query = query.where(
            or_(
                Activation.activated_at < at,
                and_(Activation.activated_at == at, Activation.id < activation_id),
            )
        )
    rows = session.execute(
        query.order_by(Activation.activated_at.desc(), Activation.id.desc()).limit(limit + 1)
    ).all()
    page = [(r[0], r[1]) for r in rows[:limit]]
    next_cursor = _cursor(rows[limit - 1][0]) if len(rows) > limit else None
    return ActivationPage(page, next_cursor)


def deactivate(session: Session, actor: str, activation_id: str, now: datetime) -> Activation:
    """Free an activation's slot (``manual``); deactivating one already freed changes nothing."""
    row = session.get(Activation, activation_id, with_for_update=True)
    if row is None:
        raise NotFound("no activation has this id")
    if row.deactivated_at is None:
        row.deactivated_at = now
        row.deactivated_reason = "manual"
        record(
            session,
            now,
            actor,
            "activation.deactivate",
            activation_object(row.license_id, row.id),
            {"server_id": row.server_id},
        )
    return row
