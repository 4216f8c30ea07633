"""The rows every area of the marketplace reads or locks inside its own transaction.

Every write on a backend's licenses, installations, keys or admin token happens under that
backend's row lock (``SELECT … FOR UPDATE`` on PostgreSQL; SQLite's ``BEGIN IMMEDIATE`` serialises
writers anyway), so concurrent requests of one backend and the operator's CLI never interleave.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from ...errors import NotFound
from ...models import BackendLicense, Installation, MarketplaceBackend
from .state import Plan, Status


def lock_backend(session: Session, backend_id: str) -> MarketplaceBackend:
    backend = session.scalar(
        select(MarketplaceBackend)
        .where(MarketplaceBackend.id == backend_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if backend is None:
        raise NotFound(f"no backend {backend_id}")
    return backend


def find_license(session: Session, backend_id: str, app_id: str) -> BackendLicense | None:
    return session.scalar(
        select(BackendLicense)
        .where(BackendLicense.backend_id == backend_id, BackendLicense.app_id == app_id)
        .execution_options(populate_existing=True)
    )


def find_installation(session: Session, backend_id: str, app_id: str) -> Installation | None:
    return session.scalar(
        select(Installation).where(
            Installation.backend_id == backend_id, Installation.app_id == app_id
        )
    )


def new_license(session: Session, backend_id: str, app_id: str, now: datetime) -> BackendLicense:
    lic = BackendLicense(
        backend_id=backend_id,
        app_id=app_id,
        plan=Plan.TRIAL.value,
        status=Status.PENDING.value,
        created_at=now,
        updated_at=now,
    )
    session.add(lic)
    return lic
