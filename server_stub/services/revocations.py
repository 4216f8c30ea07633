"""The signed revocation list (docs/license-files.md, "The revocation list"): one current list for
the whole server, kept in ``portal_settings`` so every process serves the same signed text.

It is re-signed in the transaction that revokes a license (:func:`publish`), and lazily by
whoever reads it once it is older than half its lifetime (:func:`current`), so an installation
polling ``next_update`` always finds a fresher one. Served publicly at
``GET /licenses/revocation-list``, returned by every heartbeat and attached to every license file.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from agent.protocol import RevokedLicense

from ..portal_models import License, PortalSetting
from ..signing import Signer
from .license_files import issue_revocation_list

#: ``portal_settings`` key holding ``{"jws": ..., "iat": <epoch seconds>}``.
SETTING_KEY = "revocation_list"
#: A list says it is good for this long (``next_update``); re-signed after half of it.
LIST_LIFETIME = timedelta(hours=24)
#: The actor recorded on the setting row when the server itself re-signs.
SYSTEM_ACTOR = "system"


def revoked_licenses(session: Session) -> list[RevokedLicense]:
    """Every revoked license that was ever signed (all its file versions); one whose first
    version was rejected never had a file, so there is nothing to revoke."""
    keys = session.scalars(
        select(License.license_key)
        .where(License.status == "revoked", License.version > 0)
        .order_by(License.license_key)
    )
    return [RevokedLicense(license_key=key, file_versions=None) for key in keys]


def locked_setting(session: Session, now: datetime, key: str = SETTING_KEY) -> PortalSetting:
    """The ``portal_settings`` row ``key``, created (empty) if missing, locked for this
    transaction: writers of one signed document sign one after the other."""
    row = session.get(PortalSetting, key, with_for_update=True)
    if row is not None:
        return row
    try:
        with session.begin_nested():
            row = PortalSetting(key=key, value={}, updated_by=SYSTEM_ACTOR, updated_at=now)
            session.add(row)
        return row
    except IntegrityError:
        # Another process created it; its insert held us until it committed.
        row = session.get(PortalSetting, key, with_for_update=True, populate_existing=True)
        assert row is not None
        return row


def next_iat(row: PortalSetting, now: datetime) -> int:
    """The ``iat`` of the signed document replacing ``row``'s: ``now`` in epoch seconds, or one
    past the kept ``iat`` where the clock has not moved past it. A reader keeps a document only
    if its ``iat`` is later than the one it has (an installation its revocation list, the
    updater its manifest), so two signed within one second must still be ordered."""
    iat = int(now.timestamp())
    kept = row.value.get("iat") if isinstance(row.value, dict) else None
    if isinstance(kept, int) and iat <= kept:
        return kept + 1
    return iat


def publish(session: Session, signer: Signer, *, issuer: str, now: datetime) -> str:
    """Sign a new list of what is revoked and store it; returns the compact JWS.

    Call inside the transaction that changes what is revoked, after the change is flushed, so
    the list and the change commit together. The setting row is locked BEFORE the revoked
    licenses are read: two concurrent revocations then sign one after the other, the second
    seeing the first (read committed), so neither list can drop the other's license.
    """
    session.flush()
    row = locked_setting(session, now)
    iat = next_iat(row, now)
    signed_at = datetime.fromtimestamp(iat, UTC)
    jws = issue_revocation_list(
        signer,
        revoked_licenses(session),
        issuer=issuer,
        now=signed_at,
        next_update=signed_at + LIST_LIFETIME,
    )
    row.value = {"jws": jws, "iat": iat}
    row.updated_by = SYSTEM_ACTOR
    row.updated_at = now
    return jws


def _value(row: PortalSetting | None) -> tuple[str, int] | None:
    return None if row is None else value_of(row.value)


def value_of(value: Any) -> tuple[str, int] | None:
    """The list and its ``iat`` in the setting's stored ``value``, or None."""
    if not isinstance(value, dict):
        return None
    jws, iat = value.get("jws"), value.get("iat")
    if not isinstance(jws, str) or not isinstance(iat, int):
        return None
    return jws, iat


def stored(session: Session) -> tuple[str, int] | None:
    """The stored list and its ``iat``, or None."""
    return _value(session.get(PortalSetting, SETTING_KEY))


def fresh(iat: int, now: datetime) -> bool:
    """Whether a list signed at ``iat`` is young enough to serve (less than half its life)."""
    return now.timestamp() - iat < LIST_LIFETIME.total_seconds() / 2


def current(session: Session, signer: Signer, *, issuer: str, now: datetime) -> str:
    """The current list, re-signed first when missing or older than half its lifetime.

    ``session`` must be a write session (the re-signed list is stored).
    """
    return current_of(stored(session), session, signer, issuer=issuer, now=now)


def current_of(
    kept: tuple[str, int] | None, session: Session, signer: Signer, *, issuer: str, now: datetime
) -> str:
    """:func:`current` where the stored list was already read (``kept``, :func:`value_of` of
    the setting's value: a hot path reads it with its other rows)."""
    if kept is not None and fresh(kept[1], now):
        return kept[0]
    return publish(session, signer, issuer=issuer, now=now)
