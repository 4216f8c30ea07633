"""The catalog's listings, created and replaced by the operator."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from ...db import transaction
from ...errors import AlreadyExists, NotFound, ValidationFailed
from ...models import MarketplaceApp
from ..context import ServiceContext
from .audit import OPERATOR, app_record, audit
from .specs import AppSpec, apply_spec, spec_problems


class Apps:
    def __init__(self, ctx: ServiceContext) -> None:
        self._ctx = ctx

    def create_app(self, spec: AppSpec) -> MarketplaceApp:
        _check(spec)
        now = self._ctx.clock.now()
        try:
            with transaction(self._ctx.write) as session:
                if session.get(MarketplaceApp, spec.id) is not None:
                    raise AlreadyExists(f"an app with the id {spec.id!r} is listed already")
                app = MarketplaceApp(id=spec.id, created_at=now)
                apply_spec(app, spec)
                session.add(app)
                audit(session, now, OPERATOR, "app.create", app_id=app.id, after=app_record(app))
        except IntegrityError as exc:
            raise AlreadyExists(f"an app with the id {spec.id!r} is listed already") from exc
        return app

    def update_app(self, spec: AppSpec) -> MarketplaceApp:
        """Replace the listing of the app ``spec.id`` (a new artifact, new URLs, new prices)."""
        _check(spec)
        now = self._ctx.clock.now()
        with transaction(self._ctx.write) as session:
            app = session.get(MarketplaceApp, spec.id)
            if app is None:
                raise NotFound(f"no app {spec.id!r} is listed")
            before = app_record(app)
            apply_spec(app, spec)
            audit(
                session,
                now,
                OPERATOR,
                "app.update",
                app_id=app.id,
                before=before,
                after=app_record(app),
            )
        return app

    def list_apps(self) -> list[MarketplaceApp]:
        with transaction(self._ctx.read) as session:
            return list(session.scalars(select(MarketplaceApp).order_by(MarketplaceApp.id)))


def _check(spec: AppSpec) -> None:
    problems = spec_problems(spec)
    if problems:
        raise ValidationFailed("; ".join(problems))
