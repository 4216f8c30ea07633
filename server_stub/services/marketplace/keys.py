"""A backend's signing keys: the one it signs User App Access Tokens with now, and those it
replaced, published as long as a token they signed may live."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from agent.protocol import APP_ACCESS_ALG, APP_ACCESS_TOKEN_TTL_SECONDS, jwk_thumbprint

from ...db import transaction
from ...errors import AlreadyExists, NotFound
from ...models import BackendKey, MarketplaceBackend
from ..context import ServiceContext
from .audit import audit, backend_actor
from .backends import public_key_members
from .rows import lock_backend

#: A replaced backend key stays published as long as a token it signed may live.
_KEY_PUBLISHED_AFTER_REPLACEMENT = timedelta(seconds=APP_ACCESS_TOKEN_TTL_SECONDS)


@dataclass(frozen=True)
class PublishedKeys:
    backend_id: str
    current_kid: str
    keys: list[dict[str, str]]


class BackendKeys:
    def __init__(self, ctx: ServiceContext) -> None:
        self._ctx = ctx

    def register_key(self, backend_id: str, jwk: Mapping[str, str]) -> PublishedKeys:
        """Make ``jwk`` the backend's current key; the one it replaces stays published 30 min."""
        key = public_key_members(jwk)
        kid = jwk_thumbprint(key)
        now = self._ctx.clock.now()
        try:
            with transaction(self._ctx.write) as session:
                lock_backend(session, backend_id)
                known = session.get(BackendKey, kid)
                if known is not None and known.backend_id != backend_id:
                    raise AlreadyExists("this key is registered to another backend")
                current = session.scalar(
                    select(BackendKey).where(
                        BackendKey.backend_id == backend_id, BackendKey.retired_at.is_(None)
                    )
                )
                if current is None or current.kid != kid:
                    if current is not None:
                        current.retired_at = now
                    if known is not None:  # a key used before comes back
                        known.retired_at = None
                    else:
                        session.add(
                            BackendKey(kid=kid, backend_id=backend_id, jwk=key, created_at=now)
                        )
                    audit(
                        session,
                        now,
                        backend_actor(backend_id),
                        "backend.key",
                        backend_id=backend_id,
                        before={"kid": current.kid if current else None},
                        after={"kid": kid},
                    )
                    session.flush()
                keys = _published_keys(session, backend_id, now)
        except IntegrityError as exc:  # another backend registered the same key just now
            raise AlreadyExists("this key is registered to another backend") from exc
        return PublishedKeys(backend_id=backend_id, current_kid=kid, keys=keys)

    def backend_jwks(self, backend_id: str) -> list[dict[str, str]]:
        """The backend's current key and those replaced less than 30 minutes ago."""
        now = self._ctx.clock.now()
        with transaction(self._ctx.read) as session:
            if session.get(MarketplaceBackend, backend_id) is None:
                raise NotFound("no such backend")
            return _published_keys(session, backend_id, now)


def _published_keys(session: Session, backend_id: str, now: datetime) -> list[dict[str, str]]:
    horizon = now - _KEY_PUBLISHED_AFTER_REPLACEMENT
    rows = session.scalars(
        select(BackendKey).where(
            BackendKey.backend_id == backend_id,
            or_(BackendKey.retired_at.is_(None), BackendKey.retired_at > horizon),
        )
    ).all()
    # The current key first, then the others, most recently replaced first.
    ordered = sorted(
        rows,
        key=lambda k: (k.retired_at is not None, -(k.retired_at or now).timestamp(), k.kid),
    )
    return [{**k.jwk, "kid": k.kid, "alg": APP_ACCESS_ALG, "use": "sig"} for k in ordered]
