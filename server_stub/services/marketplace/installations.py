"""Installations of apps on backends (idempotent), each announced to the app through the
callback outbox written in the same transaction."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from agent.protocol import INSTALLABLE_LICENSE_STATUSES

from ...db import transaction
from ...errors import LicenseInactive, NotFound
from ...models import Installation, MarketplaceApp
from ..callbacks import CallbackKind, enqueue_callback
from ..context import ServiceContext
from .audit import audit, backend_actor, installation_record
from .rows import find_installation, lock_backend
from .transitions import locked_app_license


@dataclass(frozen=True)
class InstallResult:
    installation: Installation
    app: MarketplaceApp
    created: bool


class Installations:
    def __init__(self, ctx: ServiceContext) -> None:
        self._ctx = ctx

    def install(self, backend_id: str, app_id: str, config: Mapping[str, Any]) -> InstallResult:
        """Install an app on a backend with an active or trial license (idempotent)."""
        now = self._ctx.clock.now()
        with transaction(self._ctx.write) as session:
            app, _lic, state = locked_app_license(session, backend_id, app_id, now)
            if state not in INSTALLABLE_LICENSE_STATUSES:
                held = f"the license is {state}" if state else "there is no license"
                raise LicenseInactive(
                    f"installing needs an active or trial license of {app_id!r}; {held}"
                )
            actor = backend_actor(backend_id)
            inst = find_installation(session, backend_id, app_id)
            if inst is not None:
                if inst.config != dict(config):
                    before = installation_record(inst)
                    inst.config = dict(config)
                    audit(
                        session,
                        now,
                        actor,
                        "installation.config",
                        backend_id=backend_id,
                        app_id=app_id,
                        before=before,
                        after=installation_record(inst),
                    )
                return InstallResult(installation=inst, app=app, created=False)
            inst = Installation(
                backend_id=backend_id, app_id=app_id, installed_at=now, config=dict(config)
            )
            session.add(inst)
            audit(
                session,
                now,
                actor,
                "installation.create",
                backend_id=backend_id,
                app_id=app_id,
                after=installation_record(inst),
            )
            enqueue_callback(session, now, backend_id, app_id, CallbackKind.INSTALLED)
            return InstallResult(installation=inst, app=app, created=True)

    def uninstall(self, backend_id: str, app_id: str) -> bool:
        """Remove an installation; ``False`` if there was none (idempotent)."""
        now = self._ctx.clock.now()
        with transaction(self._ctx.write) as session:
            lock_backend(session, backend_id)
            if session.get(MarketplaceApp, app_id) is None:
                raise NotFound(f"no app {app_id!r} in the catalog")
            inst = find_installation(session, backend_id, app_id)
            if inst is None:
                return False
            audit(
                session,
                now,
                backend_actor(backend_id),
                "installation.delete",
                backend_id=backend_id,
                app_id=app_id,
                before=installation_record(inst),
            )
            session.delete(inst)
            enqueue_callback(session, now, backend_id, app_id, CallbackKind.UNINSTALLED)
            return True
