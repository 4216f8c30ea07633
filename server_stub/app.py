"""The FastAPI app factory."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_openapi

from agent.protocol import PROBLEM_CONTENT_TYPE, Problem

from . import __version__
from .clock import Clock
from .config import Settings
from .metrics import Metrics
from .middleware import BodyLimitMiddleware, EdgeMiddleware
from .problems import install_handlers
from .ratelimit import RateLimitMiddleware, make_storage
from .routers import (
    auth,
    billing,
    billing_staff,
    external,
    license,
    licensing,
    marketplace,
    points,
    points_staff,
    portal_activations,
    portal_clients,
    portal_license_transfer,
    portal_licenses,
    portal_notifications,
    portal_payments,
    portal_products,
    portal_reports,
    profile,
    releases,
    staff,
    store,
    store_staff,
    system,
    telemetry,
    usage,
    webhooks,
    webhooks_rustore,
)
from .services.tabular import MAX_IMPORT_BYTES
from .services.webhooks.worker import work_forever
from .sweeper_lease import SweeperLease, make_sweeper_lease
from .wiring import Services, build_services

log = logging.getLogger("tgflow.server")

# FastAPI's native OpenTelemetry hook (newer FastAPI releases) checks the global providers on
# every request even when none is configured; this server's metrics are Prometheus (/metrics).
_NO_NATIVE_TELEMETRY: dict[str, Any] = (
    {"telemetry": {"tracing": False, "metrics": False, "logs": False}}
    if "telemetry" in inspect.signature(FastAPI.__init__).parameters
    else {}
)


async def _sweep_forever(
    services: Services, interval: float, lease: SweeperLease | None = None
) -> None:
    lease = lease or SweeperLease()
    while True:
        await asyncio.sleep(interval)
        try:
            held = await run_in_threadpool(lease.hold)
        except Exception:  # the sweeper must outlive a database hiccup
            log.warning("sweeper lease check failed; will retry", exc_info=True)
            continue
        if not held:
            continue  # another process sweeps (sweeper_lease.py)
        # Looked up on every round, and each on its own: one failing does not stop the others.
        for sweep in (
            services.reservations.sweep,
            services.telemetry.purge_expired,
            services.idempotency.sweep,
            services.marketplace.settle_due,
            services.audit.checkpoint_due,
            services.activations.free_dead,
            services.notifications.scan_expiry,
            services.webhooks.prune,
            # Holds past their TTL go back to the wallets; granted points past their expiry go.
            services.points.expire,
            # Its own interval (billing_reconcile_interval_seconds); waits on the providers.
            services.billing.reconciler.due,
            # RuStore purchases left unfinished (a notification that never came); same interval.
            services.store_reconciler.due,
            # Last: they wait on the apps, the payment providers and the notification channels
            # (a timeout per attempt, 50 attempts per round).
            services.callbacks.deliver_due,
            services.billing.renew_due,
            services.notifications.deliver_due,
        ):
            try:
                await run_in_threadpool(sweep)
            except Exception:  # the sweeper must outlive a database hiccup
                log.warning("sweep failed; will retry", exc_info=True)


def create_app(
    settings: Settings | None = None,
    *,
    clock: Clock | None = None,
    services: Services | None = None,
    sweeper: bool = True,
) -> FastAPI:
    """Build the app. ``services`` may be passed to share one database between apps."""
    settings = settings or Settings()
    services = services or build_services(settings, clock)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        services.sessions.start()
        lease = make_sweeper_lease(settings.resolved_database_url())
        tasks = []
        if sweeper:
            tasks.append(
                asyncio.create_task(
                    _sweep_forever(services, settings.sweep_interval_seconds, lease)
                )
            )
        # Every process applies webhooks (they share the queue); not before billing is wired.
        if sweeper and services.webhooks.applier is not None:
            tasks.append(
                asyncio.create_task(work_forever(services.webhooks, settings.webhook_poll_seconds))
            )
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await run_in_threadpool(lease.release)
            await run_in_threadpool(services.sessions.stop)

    app = FastAPI(
        title="TGFlow reference backend",
        version=__version__,
        description="Auth, licenses and usage for the TGFlow desktop, and the app marketplace. "
        "Errors are RFC 9457 problem details (`application/problem+json`) with a stable `code`.",
        lifespan=lifespan,
        **_NO_NATIVE_TELEMETRY,
    )
    app.state.services = services
    install_handlers(app)
    for router in (
        # First: a provider's burst of webhooks is the hottest POST, and a request is matched
        # against every route before its own (each router's routes in turn: webhooks last cost
        # it ~110 route checks, 0.1 ms). Only its paths start with /webhooks/, so its place
        # shadows nothing; the two checks it puts before every other request cost microseconds.
        webhooks.router,
        webhooks_rustore.router,
        # Before any router with ``/licenses/{license_key}``: ``/licenses/revocation-list`` and
        # ``/licenses/revoke`` are fixed paths, not license keys.
        # Before portal_licenses: /staff/licenses/export is not a license reference.
        portal_license_transfer.router,
        portal_licenses.router,
        # The hot routers first: a request is matched against the routes in this order.
        license.router,
        usage.router,
        auth.router,
        telemetry.router,
        marketplace.router,
        # After any other /licenses router: /licenses/{license_key} would shadow a fixed path.
        licensing.router,
        staff.router,
        portal_clients.router,
        portal_products.router,
        portal_payments.router,
        external.router,
        portal_activations.router,
        portal_notifications.router,
        portal_reports.router,
        billing.router,
        billing_staff.router,
        points.router,
        points_staff.router,
        profile.router,
        store.router,
        store_staff.router,
        releases.router,
        system.router,
    ):
        app.include_router(router)
    _add_middleware(app, settings, services)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _add_middleware(app: FastAPI, settings: Settings, services: Services) -> None:
    # Added innermost first: the last one added sees the request first.
    metrics: Metrics = services.ctx.metrics
    if settings.rate_limit_enabled:
        redis_url = settings.redis_url.get_secret_value() if settings.redis_url else None
        app.add_middleware(
            RateLimitMiddleware,
            storage=make_storage(redis_url, settings.redis_key_prefix + "-rl"),
            per_token=settings.rate_limit_per_token,
            per_ip=settings.rate_limit_per_ip,
            wallet_per_ip=settings.rate_limit_wallet_per_ip,
            auth=services.auth,
            marketplace=services.marketplace,
            metrics=metrics,
            trust_forwarded_for=settings.trust_forwarded_for,
        )
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=settings.max_body_bytes,
        upload_bytes=max(settings.max_body_bytes, MAX_IMPORT_BYTES),
    )
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            # PATCH: /user/update and the staff's edits; Idempotency-Key: the money-moving POSTs.
            allow_methods=["GET", "POST", "DELETE", "PUT", "PATCH"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key"],
            max_age=600,
        )
    app.add_middleware(
        EdgeMiddleware, metrics=metrics, hsts=settings.public_url.lower().startswith("https://")
    )


def _openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    # Error bodies are problem details; say so instead of FastAPI's default application/json.
    # Only for the Problem model: a degraded /healthz answers 503 with its usual JSON body.
    problem_ref = "#/components/schemas/" + Problem.__name__
    for path in schema.get("paths", {}).values():
        for operation in path.values():
            for code, response in operation.get("responses", {}).items():
                content = response.get("content", {})
                body = content.get("application/json", {})
                if code[0] in "45" and body.get("schema", {}).get("$ref") == problem_ref:
                    content[PROBLEM_CONTENT_TYPE] = content.pop("application/json")
    app.openapi_schema = schema
    return schema
