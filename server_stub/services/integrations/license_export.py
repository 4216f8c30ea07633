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


def records(session: Session, filters: LicenseFilter, now: datetime) -> Iterator[dict[str, Any]]:
    """Every matching license as a dict of :data:`COLUMNS`, in id order, a batch at a time."""
    last_id = ""
    while True:
        query = (
            select(License, Client.legal_name, Client.inn)
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
        live = _live_activations(session, [lic for lic, _, _ in batch], now)
        for lic, legal_name, inn in batch:
            count, heartbeat = live.get(lic.id, (0, None))
            yield {
                "id": lic.id,
                "client_id": lic.client_id,
                "client_legal_name": legal_name,
                "client_inn": inn,
                "product": lic.product_id,
                "plan": lic.plan,
                "modules": list(lic.modules or []),
                "status": lic.status,
                "valid_from": _text(lic.valid_from),
                "valid_until": _text(lic.valid_until),
                "grace_days": lic.grace_days,
                "created_at": _text(lic.created_at),
                "updated_at": _text(lic.updated_at),
                "file_version": lic.version,
                "license_key_hint": key_hint(lic.license_key),
                "live_activations": count,
                "last_heartbeat_at": _text(heartbeat),
            }
        last_id = batch[-1][0].id


def _live_activations(
    session: Session, licenses: list[License], now: datetime
) -> dict[str, tuple[int, datetime | None]]:
    """Per license: activations not deactivated whose last heartbeat is within the license's
    window (a dead one the sweeper has not freed yet does not count), and the latest heartbeat
    of any of its activations."""
    windows = {lic.id: timedelta(seconds=lic.heartbeat_window_s) for lic in licenses}
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
