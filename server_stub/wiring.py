"""Builds the object graph once: settings → engine, keys, tokens → services."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from agent.protocol import KEY_PURPOSE_AUTH, KEY_PURPOSE_LICENSE

from . import db
from .clock import Clock, SystemClock
from .config import Settings
from .keys import KeyStore
from .marketplace_tokens import MarketplaceTokens
from .metrics import Metrics
from .services.activations import ActivationService
from .services.audit import AuditLog
from .services.auth import AuthService
from .services.billing.contract import ProviderName
from .services.billing.providers import build_adapters
from .services.billing.service import BillingService
from .services.billing.webhook_bridge import BillingEventApplier, CloudPaymentsCheck
from .services.callbacks import CallbackService
from .services.clients import ClientService
from .services.context import ServiceContext
from .services.idempotency import IdempotencyService
from .services.integrations import IntegrationService
from .services.license import LicenseService
from .services.licensing import LicensingService
from .services.marketplace import MarketplaceService
from .services.notifications import NotificationService
from .services.plans import PlanService
from .services.points.service import PointsService
from .services.profile import ProfileService
from .services.releases import ReleaseService
from .services.reports import ReportService
from .services.reservations import ReservationService
from .services.staff import StaffService
from .services.store.inbox_bridge import ProviderRouter, StoreEventApplier
from .services.store.products import ProductCatalog
from .services.store.purchases import StoreService
from .services.store.reconcile import StoreReconciler
from .services.store.rustore import RuStoreClient
from .services.telemetry import TelemetryService
from .services.webhooks import WebhookInbox
from .session_bus import SessionBus, make_session_bus
from .signing import Signer, signer_from_settings
from .tokens import TokenService

#: How long a retired license-file key stays published (license files outlive sessions).
LICENSE_KEY_PUBLISH = timedelta(days=400)


@dataclass(frozen=True)
class Services:
    ctx: ServiceContext
    auth: AuthService
    license: LicenseService
    reservations: ReservationService
    plans: PlanService
    telemetry: TelemetryService
    marketplace: MarketplaceService
    callbacks: CallbackService
    #: Announces ended sessions; the app starts and stops its listener with its lifespan.
    sessions: SessionBus
    audit: AuditLog
    staff: StaffService
    #: Signs license files and the other signed documents (the key file, or PKCS#11).
    signer: Signer
    #: The portal's clients, contracts, products and notes.
    clients: ClientService

    #: Billing/CRM integration (``/external``) and the staff side of payments.
    integrations: IntegrationService
    #: Staff's license lifecycle (issue, renew, four eyes, revoke); not the end user's /license.
    licensing: LicensingService
    #: Installations of on-prem licenses: the product API and its limits.
    activations: ActivationService
    #: The notification outbox: its channels, the expiry scan and delivery.
    notifications: NotificationService
    reports: ReportService
    #: ``Idempotency-Key`` of the money-moving POSTs (routers/idempotent.py).
    idempotency: IdempotencyService
    #: Subscription billing: plans and prices, subscriptions, provider events (no provider is
    #: configured here yet: checkouts fail closed until adapters are wired).
    billing: BillingService
    #: Provider webhooks: verified, deduplicated, stored, and applied to billing by the worker
    #: (services/billing/webhook_bridge.py); CloudPayments' Check answered from our invoices.
    webhooks: WebhookInbox
    #: The points wallet: a double-entry ledger of credits, spends and holds (docs/points.md).
    points: PointsService
    #: The customer's profile: plan, subscription and points; e-mail and password changes.
    profile: ProfileService
    #: Store purchases (RuStore): the product catalogue, verifies and notifications.
    store: StoreService
    #: Asks RuStore again about the purchases it has not finished (a lost notification).
    store_reconciler: StoreReconciler
    #: The signed release manifest the desktops' update notice reads (docs/updates.md).
    releases: ReleaseService


def open_keys(settings: Settings, clock: Clock, *, create: bool = True) -> KeyStore:
    """The server's key store; ``create=False`` only loads keys already there (read-only
    commands must not mint a key set that no running server uses)."""
    auth_lifetime = timedelta(
        seconds=max(settings.access_token_ttl_seconds, settings.lease_ttl_seconds)
    )
    store = KeyStore(
        settings.data_dir / "keys",
        clock,
        {KEY_PURPOSE_AUTH: auth_lifetime, KEY_PURPOSE_LICENSE: LICENSE_KEY_PUBLISH},
    )
    return store.ensure() if create else store.open_existing()


def build_rustore(settings: Settings) -> RuStoreClient | None:
    """RuStore's client when its ``Public-Token`` is set; absent otherwise (fail closed)."""
    token = settings.rustore_public_token
    if token is None or not token.get_secret_value():
        return None
    return RuStoreClient(
        token.get_secret_value(),
        api_base=settings.rustore_api_base,
        app_id=settings.rustore_app_id,
        sandbox=settings.rustore_sandbox,
    )


def build_services(
    settings: Settings, clock: Clock | None = None, *, read_only: bool = False
) -> Services:
    """``read_only``: neither migrate nor create keys (the database must already be there)."""
    clock = clock or SystemClock()
    database_url = settings.resolved_database_url()
    engine = db.make_engine(database_url)
    if settings.run_migrations and not read_only:
        db.upgrade(engine)
    keys = open_keys(settings, clock, create=not read_only)
    # Before anything is served: a PKCS#11 signer that is configured but unusable stops start-up.
    signer = signer_from_settings(settings, keys)
    ctx = ServiceContext(
        settings=settings,
        clock=clock,
        engine=engine,
        write=db.make_sessionmaker(engine),
        read=db.make_sessionmaker(engine, read_only=True),
        snapshot=db.make_sessionmaker(engine, read_only=True, snapshot=True),
        keys=keys,
        tokens=TokenService(keys, settings.issuer),
        metrics=Metrics(),
    )
    marketplace_tokens = MarketplaceTokens(keys, settings.issuer)
    # Only the providers whose credentials are set (an unconfigured one is absent: fail closed).
    adapters = build_adapters(settings)
    billing = BillingService(ctx, adapters)
    points = PointsService(ctx)
    store = StoreService(ctx, points, ProductCatalog(ctx), build_rustore(settings))
    sessions = make_session_bus(database_url, settings.session_cache_ttl_seconds)
    return Services(
        ctx=ctx,
        auth=AuthService(ctx, sessions),
        license=LicenseService(ctx),
        reservations=ReservationService(ctx),
        plans=PlanService(ctx),
        telemetry=TelemetryService(ctx),
        marketplace=MarketplaceService(ctx, marketplace_tokens),
        callbacks=CallbackService(ctx, marketplace_tokens),
        sessions=sessions,
        audit=AuditLog(ctx, signer),
        staff=StaffService(ctx, read_only=read_only),
        signer=signer,
        clients=ClientService(ctx),
        integrations=IntegrationService(ctx),
        licensing=LicensingService(ctx, signer),
        activations=ActivationService(ctx, signer),
        notifications=NotificationService(ctx),
        reports=ReportService(ctx),
        idempotency=IdempotencyService(ctx),
        billing=billing,
        webhooks=WebhookInbox(
            ctx,
            applier=ProviderRouter(
                BillingEventApplier(billing, adapters), rustore=StoreEventApplier(store)
            ),
            checker=CloudPaymentsCheck(billing, configured=ProviderName.CLOUDPAYMENTS in adapters),
        ),
        points=points,
        profile=ProfileService(ctx, sessions, billing, points),
        store=store,
        store_reconciler=StoreReconciler(ctx, store),
        releases=ReleaseService(ctx, signer),
    )
