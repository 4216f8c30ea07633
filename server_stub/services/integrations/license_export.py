"""Licenses for a billing/CRM system's analytics (``GET /external/licenses/export``).

Read in batches from one snapshot, so 10,000 licenses stream in constant memory and the export
is consistent. A license key is a secret (it decrypts an encrypted file and identifies the
license to the product API): only its last four characters go out, masked.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ...portal_models import Activation, Client, License
from .timestamps import utc_text

BATCH = 500
COLUMNS = (
    "id",
    "client_id",
    "client_legal_name",
    "client_inn",
    "product",
    "plan",
    "modules",
    "status",
    "valid_from",
    "valid_until",
    "grace_days",
    "created_at",
    "updated_at",
    "file_version",
    "license_key_hint",
    "live_activations",
    "last_heartbeat_at",
)


@dataclass(frozen=True)
class LicenseFilter:
    status: str | None = None
    updated_since: datetime | None = None


def key_hint(key: str) -> str:
    """``…ABCD``: enough for a person to tell two licenses apart, useless to an attacker."""
    return "…" + key[-4:] if len(key) > 8 else "…"


def _text(when: datetime | None) -> str | None:
    return None if when is None else utc_text(when)


#: Only what goes out: loading whole rows would decode every license's JSON columns too.
_COLUMNS = (
    License.id,
    License.client_id,
    Client.legal_name,
    Client.inn,
    License.product_id,
    License.plan,
    License.modules,
    License.status,
    License.valid_from,
    License.valid_until,
    License.grace_days,
    License.created_at,
    License.updated_at,
    License.version,
    License.license_key,
    License.heartbeat_window_s,
)


def records(session: Session, filters: LicenseFilter, now: datetime) -> Iterator[dict[str, Any]]:
    """Every matching license as a dict of :data:`COLUMNS`, in id order, a batch at a time."""
    last_id = ""
    while True:
        query = (
            select(*_COLUMNS)
            .join(Client, Client.id == License.client_id)
            .where(License.id > last_id)
            .order_by(License.id)
            .limit(BATCH)
        )
        if filters.status is not None:
            query = query.where(License.status == filters.status)
        if filters.updated_since is not None:
            query = query.where(License.updated_at >= filters.updated_since)
        batch = session.execute(query).all()
        if not batch:
            return
        windows = {row.id: timedelta(seconds=row.heartbeat_window_s) for row in batch}
        live = _live_activations(session, windows, now)
        for row in batch:
            count, heartbeat = live.get(row.id, (0, None))
            yield {
                "id": row.id,
                "client_id": row.client_id,
                "client_legal_name": row.legal_name,
                "client_inn": row.inn,
                "product": row.product_id,
                "plan": row.plan,
                "modules": list(row.modules or []),
                "status": row.status,
                "valid_from": _text(row.valid_from),
                "valid_until": _text(row.valid_until),
                "grace_days": row.grace_days,
                "created_at": _text(row.created_at),
                "updated_at": _text(row.updated_at),
                "file_version": row.version,
                "license_key_hint": key_hint(row.license_key),
                "live_activations": count,
                "last_heartbeat_at": _text(heartbeat),
            }
        last_id = batch[-1].id


def _live_activations(
    session: Session, windows: dict[str, timedelta], now: datetime
) -> dict[str, tuple[int, datetime | None]]:
    """Per license: activations not deactivated whose last heartbeat is within the license's
    window (a dead one the sweeper has not freed yet does not count), and the latest heartbeat
    of any of its activations."""
    result: dict[str, tuple[int, datetime | None]] = {}
    rows = session.execute(
        select(Activation.license_id, Activation.last_heartbeat_at, Activation.deactivated_at)
        .where(Activation.license_id.in_(list(windows)))
        .execution_options(yield_per=BATCH)
    )
    for license_id, heartbeat, deactivated in rows:
        count, latest = result.get(license_id, (0, None))
        if deactivated is None and heartbeat >= now - windows[license_id]:
            count += 1
        if latest is None or heartbeat > latest:
            latest = heartbeat
        result[license_id] = (count, latest)
    return result


def csv_cells(record: dict[str, Any]) -> list[str | int | None]:
    """A record as a table row: modules joined with ``;``."""
    return [
        ";".join(value) if column == "modules" else value
        for column, value in ((c, record[c]) for c in COLUMNS)
    ]
