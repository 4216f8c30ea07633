"""Tenant backends and their tokens: registration, the Backend Admin Token (revocable by
re-issue) and the short-lived Backend User Token."""

from __future__ import annotations

import hmac
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from agent.protocol import jwk_thumbprint

from ...db import transaction
from ...errors import AlreadyExists, TokenInvalid, ValidationFailed
from ...marketplace_tokens import (
    BackendClaims,
    BackendTokenKind,
    IssuedBackendToken,
    MarketplaceTokens,
)
from ...models import BackendKey, MarketplaceBackend
from ..context import ServiceContext
from .audit import OPERATOR, audit
from .rows import lock_backend
from .specs import text_problem

log = logging.getLogger("tgflow.server.marketplace")


@dataclass(frozen=True)
class BackendPrincipal:
    """The backend behind a verified Backend Admin or User Token."""

    backend_id: str
    jti: str


@dataclass(frozen=True)
class NewBackend:
    backend: MarketplaceBackend
    kid: str
    admin_token: IssuedBackendToken


def public_key_members(jwk: Mapping[str, str]) -> dict[str, str]:
    """The members of a P-256 public JWK that its thumbprint (and so its ``kid``) covers."""
    return {k: jwk[k] for k in ("kty", "crv", "x", "y")}


class Backends:
    def __init__(self, ctx: ServiceContext, tokens: MarketplaceTokens) -> None:
        self._ctx = ctx
        self._tokens = tokens

    def create_backend(self, name: str, jwk: Mapping[str, str]) -> NewBackend:
        """Register a backend with its public key; returns it with its Backend Admin Token."""
        name = name.strip()
        problem = text_problem("the backend name", name, 100)
        if problem:
            raise ValidationFailed(problem)
        key = public_key_members(jwk)
        kid = jwk_thumbprint(key)
        now = self._ctx.clock.now()
        try:
            with transaction(self._ctx.write) as session:
                if session.get(BackendKey, kid) is not None:
                    raise AlreadyExists("this key is registered to another backend already")
                backend = MarketplaceBackend(name=name, created_at=now)
                session.add(backend)
                session.flush()
                session.add(BackendKey(kid=kid, backend_id=backend.id, jwk=key, created_at=now))
                issued = self._issue_admin_token(backend, now)
                audit(
                    session,
                    now,
                    OPERATOR,
                    "backend.create",
                    backend_id=backend.id,
                    after={"name": name, "kid": kid, "admin_token_jti": issued.jti},
                )
        except IntegrityError as exc:  # a concurrent registration of the same key won
            raise AlreadyExists("this key is registered to another backend already") from exc
        log.info("marketplace backend created", extra={"backend_id": backend.id})
        return NewBackend(backend=backend, kid=kid, admin_token=issued)

    def reissue_admin_token(self, backend_id: str) -> IssuedBackendToken:
        """A new Backend Admin Token; the backend's previous one stops working at once."""
        now = self._ctx.clock.now()
        with transaction(self._ctx.write) as session:
            backend = lock_backend(session, backend_id)
            before: dict[str, object] = {"admin_token_jti": backend.admin_token_jti}
            issued = self._issue_admin_token(backend, now)
            audit(
                session,
                now,
                OPERATOR,
                "backend.admin_token",
                backend_id=backend_id,
                before=before,
                after={"admin_token_jti": issued.jti},
            )
        return issued

    def _issue_admin_token(self, backend: MarketplaceBackend, now: datetime) -> IssuedBackendToken:
        issued = self._tokens.issue(BackendTokenKind.ADMIN, backend.id, now=now)
        backend.admin_token_jti = issued.jti
        backend.admin_token_issued_at = now
        return issued

    def authenticate_admin(self, token: str) -> BackendPrincipal:
        """The backend behind a Backend Admin Token that is still its current one."""
        claims = self._tokens.verify(token, BackendTokenKind.ADMIN, now=self._ctx.clock.now())
        with transaction(self._ctx.read) as session:
            current = session.scalar(
                select(MarketplaceBackend.admin_token_jti).where(
                    MarketplaceBackend.id == claims.backend_id
                )
            )
        if current is None or not hmac.compare_digest(current, claims.jti):
            raise TokenInvalid("this Backend Admin Token has been replaced or its backend is gone")
        return BackendPrincipal(backend_id=claims.backend_id, jti=claims.jti)

    def authenticate_user(self, token: str) -> BackendPrincipal:
        """The backend behind a Backend User Token."""
        claims = self._tokens.verify(token, BackendTokenKind.USER, now=self._ctx.clock.now())
        with transaction(self._ctx.read) as session:
            known = session.get(MarketplaceBackend, claims.backend_id) is not None
        if not known:
            raise TokenInvalid("the backend of this Backend User Token is gone")
        return BackendPrincipal(backend_id=claims.backend_id, jti=claims.jti)

    def verify_token(self, token: str) -> BackendClaims:
        """Signature, times and type of a Backend Admin or User Token (no database)."""
        return self._tokens.verify_either(token, now=self._ctx.clock.now())

    def issue_user_token(self, backend_id: str) -> IssuedBackendToken:
        return self._tokens.issue(BackendTokenKind.USER, backend_id, now=self._ctx.clock.now())
