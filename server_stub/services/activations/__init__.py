"""Installations of on-prem licenses (seed 003, 3.3): the product API's activate, heartbeat and
status, the built-in limits, the sweeper's freeing of dead activations, and staff monitoring.

:class:`ActivationService` is the facade and owns the transactions; :mod:`.product` does the
work of each product request, :mod:`.limits` the per-hour and per-license limits, :mod:`.rules`
the checks without a database, :mod:`.monitoring` the staff side. docs/licensing.md, "Product
API" and "Limits", is the contract.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from agent.protocol import ActivateRequest, HeartbeatRequest

from ...db import one_statement, transaction
from ...portal_models import Activation, License
from ...signing import Signer
from ..context import ServiceContext
from . import hot, monitoring, product
from .limits import IP_CHARS, free_dead, record_refusal
from .monitoring import MAX_PAGE, ActivationPage
from .product import Activated, HeartbeatReply, LicenseStatus, Refused

_T = TypeVar("_T")
_Body = TypeVar("_Body", ActivateRequest, HeartbeatRequest)

__all__ = [
    "MAX_PAGE",
    "Activated",
    "ActivationPage",
    "ActivationService",
    "HeartbeatReply",
    "LicenseStatus",
]


class ActivationService:
    def __init__(self, ctx: ServiceContext, signer: Signer) -> None:
        self._ctx = ctx
        self._signer = signer

    def activate(self, body: ActivateRequest, ip: str) -> Activated:
        """Activate a machine (or give a machine its live activation back)."""
        return self._product(product.activate, body, ip)

    def heartbeat(self, body: HeartbeatRequest, ip: str) -> HeartbeatReply:
        """Record a heartbeat; the reply says what the installation must pick up or obey."""
        now = self._ctx.clock.now()
        # PostgreSQL: autocommit, the read and ONE writing statement, each its own transaction
        # (as the read committed transaction they replace, the write never relied on the read
        # being locked); SQLite: one BEGIN IMMEDIATE transaction.
        with one_statement(self._ctx.write) as conn:
            reply = hot.heartbeat(conn, body, ip[:IP_CHARS], now)
        if reply is not None:
            return reply
        # Not the common case (hot.py): the ORM's heartbeat, in a transaction of its own.
        return self._product(product.heartbeat, body, ip)

    def _product(
        self, call: Callable[[Session, Signer, str, _Body, str, datetime], _T], body: _Body, ip: str
    ) -> _T:
        now = self._ctx.clock.now()
        # A forwarded address is whatever the proxy sent: cut to what the columns hold.
        ip = ip[:IP_CHARS]
        with transaction(self._ctx.write) as session:
            try:
                return call(session, self._signer, self._ctx.settings.issuer, body, ip, now)
            except Refused as refused:
                # The refusal is kept (and announced) although the request is not.
                record_refusal(session, refused.license_row, refused.error, ip, now)
                error = refused.error
        raise error

    def status(self, license_key: str) -> LicenseStatus:
        with transaction(self._ctx.read) as session:
            return product.status(session, license_key, self._ctx.clock.now())

    def free_dead(self) -> int:
        """The sweeper's round: free every activation past its license's heartbeat window."""
        now = self._ctx.clock.now()
        with transaction(self._ctx.read) as session:
            windows = list(session.scalars(select(License.heartbeat_window_s).distinct()))
        freed = 0
        for window in windows:
            # One window per transaction, at most a batch each: rounds stay short.
            with transaction(self._ctx.write) as session:
                freed += len(free_dead(session, now, None, window))
        return freed

    def search(
        self,
        *,
        license_id: str | None = None,
        client_id: str | None = None,
        live: bool | None = None,
        cursor: str | None = None,
        limit: int = 100,
    ) -> ActivationPage:
        with transaction(self._ctx.read) as session:
            return monitoring.search(
                session,
                license_id=license_id,
                client_id=client_id,
                live=live,
                cursor=cursor,
                limit=limit,
            )

    def deactivate(self, actor: str, activation_id: str) -> tuple[Activation, License]:
        """Free an activation's slot by hand (staff)."""
        now = self._ctx.clock.now()
        with transaction(self._ctx.write) as session:
            row = monitoring.deactivate(session, actor, activation_id, now)
            license_row = session.get_one(License, row.license_id)
            return row, license_row
