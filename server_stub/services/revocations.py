"""The signed revocation list (docs/license-files.md, "The revocation list"): one current list for
the whole server, kept in ``portal_settings`` so every process serves the same signed text.

It is re-signed in the transaction that revokes a license (:func:`publish`), and lazily by
whoever reads it once it is older than half its lifetime (:func:`current`), so an installation
polling ``next_update`` always finds a fresher one. Served publicly at
``GET /licenses/revocation-list``, returned by every heartbeat and attached to every license file.
"""

from __future__ import annotations

from datetime import datetime, timedelta

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
    """Every revoked license (all its file versions)."""
    keys = session.scalars(
        select(License.license_key).where(License.status == "revoked").order_by(License.license_key)
    )
    return [RevokedLicense(license_key=key, file_versions=None) for key in keys]


def publish(session: Session, signer: Signer, *, issuer: str, now: datetime) -> str:
    """Sign a new list of what ``session`` sees revoked and store it; returns the compact JWS.

    Call inside the transaction that changes what is revoked, after the change is flushed, so
    the list and the change commit together.
    """
    session.flush()
    jws = issue_revocation_list(
        signer, revoked_licenses(session), issuer=issuer, now=now, next_update=now + LIST_LIFETIME
    )
    value = {"jws": jws, "iat": int(now.timestamp())}
    row = session.get(PortalSetting, SETTING_KEY, with_for_update=True)
    if row is None:
        try:
            with session.begin_nested():
                session.add(
                    PortalSetting(
                        key=SETTING_KEY, value=value, updated_by=SYSTEM_ACTOR, updated_at=now
                    )
                )
        except IntegrityError:
            # Another process published first; ours is at least as new: overwrite it.
            row = session.get(
                PortalSetting, SETTING_KEY, with_for_update=True, populate_existing=True
            )
    if row is not None:
        row.value = value
        row.updated_by = SYSTEM_ACTOR
        row.updated_at = now
    return jws


def stored(session: Session) -> tuple[str, int] | None:
    """The stored list and its ``iat``, or None."""
    row = session.get(PortalSetting, SETTING_KEY)
    if row is None or not isinstance(row.value, dict):
        return None
    jws, iat = row.value.get("jws"), row.value.get("iat")
    if not isinstance(jws, str) or not isinstance(iat, int):
        return None
    return jws, iat


def current(session: Session, signer: Signer, *, issuer: str, now: datetime) -> str:
    """The current list, re-signed first when missing or older than half its lifetime.

    ``session`` must be a write session (the re-signed list is stored).
    """
    kept = stored(session)
    if kept is not None and now.timestamp() - kept[1] < LIST_LIFETIME.total_seconds() / 2:
        return kept[0]
    return publish(session, signer, issuer=issuer, now=now)
