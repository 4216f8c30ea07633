"""What a backend and an app read: the catalog, the installed apps and the signed
entitlement snapshot. Each read settles the clock's transitions of the licenses it looked at."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import and_, select

from ...db import transaction
from ...errors import NotFound
from ...marketplace_tokens import MarketplaceTokens
from ...models import BackendLicense, Installation, MarketplaceApp
from ..context import ServiceContext
from .state import LicenseView, license_view
from .transitions import Transitions


@dataclass(frozen=True)
class CatalogEntry:
    app: MarketplaceApp
    license: LicenseView | None
    installation: Installation | None


@dataclass(frozen=True)
class InstalledEntry:
    app: MarketplaceApp
    installation: Installation
    license: LicenseView


class Reads:
    def __init__(
        self, ctx: ServiceContext, tokens: MarketplaceTokens, transitions: Transitions
    ) -> None:
        self._ctx = ctx
        self._tokens = tokens
        self._transitions = transitions

    def catalog(self, backend_id: str) -> list[CatalogEntry]:
        """Every listed app with this backend's license and installation."""
        now = self._ctx.clock.now()
        with transaction(self._ctx.read) as session:
            apps = list(session.scalars(select(MarketplaceApp).order_by(MarketplaceApp.id)))
            licenses = {
                lic.app_id: lic
                for lic in session.scalars(
                    select(BackendLicense).where(BackendLicense.backend_id == backend_id)
                )
            }
            installations = {
                inst.app_id: inst
                for inst in session.scalars(
                    select(Installation).where(Installation.backend_id == backend_id)
                )
            }
        self._transitions.settle_stale(licenses.values(), now)
        return [
            CatalogEntry(
                app=app,
                license=license_view(licenses[app.id], now) if app.id in licenses else None,
                installation=installations.get(app.id),
            )
            for app in apps
        ]

    def installed(self, backend_id: str) -> list[InstalledEntry]:
        """The apps installed on this backend whose license is usable now."""
        now = self._ctx.clock.now()
        with transaction(self._ctx.read) as session:
            rows = session.execute(
                select(Installation, MarketplaceApp, BackendLicense)
                .join(MarketplaceApp, MarketplaceApp.id == Installation.app_id)
                .join(
                    BackendLicense,
                    and_(
                        BackendLicense.backend_id == Installation.backend_id,
                        BackendLicense.app_id == Installation.app_id,
                    ),
                )
                .where(Installation.backend_id == backend_id)
                .order_by(MarketplaceApp.id)
            ).all()
        self._transitions.settle_stale((row[2] for row in rows), now)
        entries = (InstalledEntry(app, inst, license_view(lic, now)) for inst, app, lic in rows)
        return [entry for entry in entries if entry.license.usable]

    def entitlements(self, app_id: str) -> str:
        """The signed snapshot of the backends entitled to ``app_id`` now.

        Entitled: the app is installed on the backend and the backend's license is usable
        (the same rule as ``installed``).
        """
        now = self._ctx.clock.now()
        with transaction(self._ctx.read) as session:
            if session.get(MarketplaceApp, app_id) is None:
                raise NotFound(f"no app {app_id!r} in the catalog")
            licenses = list(
                session.scalars(
                    select(BackendLicense)
                    .join(
                        Installation,
                        and_(
                            Installation.backend_id == BackendLicense.backend_id,
                            Installation.app_id == BackendLicense.app_id,
                        ),
                    )
                    .where(BackendLicense.app_id == app_id)
                )
            )
        self._transitions.settle_stale(licenses, now)
        entitled = [lic.backend_id for lic in licenses if license_view(lic, now).usable]
        snapshot, _exp = self._tokens.sign_entitlements(app_id, entitled, now=now)
        return snapshot
