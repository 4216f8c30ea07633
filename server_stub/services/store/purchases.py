"""Store purchases into points and plans, exactly once (docs/points.md, "Store purchases").

Two paths reach the same apply: a verify (the app asks, with the user it came from) and a store
notification (the inbox's worker, the user from the purchase's ``developerPayload``). Both ask
the store for its truth first and never trust what the caller says it is. The points are the
ledger's, keyed by ``rustore:<invoiceId>`` across all users (PointsService), so whichever path
comes first credits and the other replays; ``store_purchases`` records the last status applied
so that nothing moves a purchase back.

A refund racing a credit: each path first commits its own write (the credit, or the purchase's
refunded status) and then reads the other's, so at least one of them sees both and claws back
(the claw-back is itself once per purchase).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from agent.protocol import StoreName

from ...db import transaction
from ...errors import (
    Forbidden,
    IdempotencyConflict,
    ServiceUnavailable,
    ValidationFailed,
)
from ...models import User
from ...points_models import PointsTransaction
from ...store_models import StorePurchase
from ..billing.contract import ProviderRefused, ProviderUnavailable
from ..context import ServiceContext
from ..points.ledger import Kind
from ..points.service import PointsService
from ..points.views import Balance
from .products import Product, ProductCatalog
from .rustore import RuStoreClient, RuStorePurchase
from .statuses import AWAITING, GRANTING, RANK, TAKEN_BACK, InvoiceStatus
from .subscriptions import claim_subscription, subscription_ref, token_of

log = logging.getLogger("tgflow.server.store")

ACTOR = "provider:rustore"


@dataclass(frozen=True)
class Verified:
    purchase_id: str
    product_id: str
    status: str
    points: int
    replayed: bool
    balance: Balance
    #: The store has not taken the payment yet (nothing credited): ask again later.
    pending: bool = False


@dataclass(frozen=True)
class SubscriptionVerified:
    product_id: str
    plan: str
    active: bool


def purchase_ref(invoice_id: str) -> str:
    return f"rustore:{invoice_id}"


def _refused(reason: str, detail: str) -> ValidationFailed:
    return ValidationFailed(detail, reason=reason)


class StoreService:
    """The store purchases' facade: its product catalogue, verifies, and notifications."""

    def __init__(
        self,
        ctx: ServiceContext,
        points: PointsService,
        products: ProductCatalog,
        rustore: RuStoreClient | None,
    ) -> None:
        self._ctx = ctx
        self._points = points
        self._products = products
        self.products = products
        self.rustore = rustore

    # --- the app's verify ---------------------------------------------------------------------

    def verify_payment(
        self,
        user_id: str,
        store: StoreName,
        invoice_id: str,
        product_id: str,
        *,
        order_id: str | None = None,
        points_only: bool = False,
    ) -> Verified:
        client = self._client(store)
        product = self._products.get(product_id)
        if product is None or not product.active:
            raise _refused("purchase_mismatch", f"no product {product_id!r} is on sale")
        if product.kind != "consumable":
            what = "points" if points_only else "a one-time purchase"
            raise _refused(
                "purchase_mismatch",
                f"{product_id!r} is a subscription, not {what}: use /subscriptions/verify",
            )
        truth = self._fetch(client, invoice_id)
        if truth is None:
            raise _refused("purchase_unknown", f"the store knows no purchase {invoice_id!r}")
        if truth.product_id != product_id:
            raise _refused("purchase_mismatch", f"purchase {invoice_id!r} is of another product")
        if order_id is not None and truth.order_id != order_id:
            raise _refused("purchase_mismatch", f"purchase {invoice_id!r} is of another order")
        if truth.developer_payload != user_id:
            raise IdempotencyConflict(
                f"purchase {invoice_id!r} was made in another account's name",
                reason="purchase_other_account",
            )
        truth = self._confirm_if_held(client, truth)
        now = self._ctx.clock.now()
        self._apply(truth, user_id, product, now)
        if truth.status in AWAITING:
            # Not a refusal: the buyer is still at the store's checkout. The client asks again
            # (or the notification credits first, and the next ask replays).
            return Verified(
                purchase_id=truth.invoice_id,
                product_id=product.id,
                status=truth.status.value,
                points=0,
                replayed=False,
                balance=self._points.balance(user_id),
                pending=True,
            )
        if truth.status not in GRANTING:
            raise _refused(
                "purchase_not_paid",
                f"the store says purchase {invoice_id!r} is {truth.status.value}, not paid",
            )
        outcome = self._credit(truth, user_id, product)
        return Verified(
            purchase_id=truth.invoice_id,
            product_id=product.id,
            status=truth.status.value,
            points=product.points or 0,
            replayed=outcome[1],
            balance=outcome[0],
        )

    def verify_subscription(
        self, user_id: str, store: StoreName, token: str, product_id: str
    ) -> SubscriptionVerified:
        client = self._client(store)
        product = self._products.get(product_id)
        if product is None or not product.active or product.kind != "subscription":
            raise _refused("purchase_mismatch", f"no subscription {product_id!r} is on sale")
        asked = self._ctx.clock.now()  # the answer tells the state at this time, or later
        try:
            active = client.subscription_active(token)
        except ProviderUnavailable as exc:
            raise _unavailable() from exc
        except ProviderRefused as exc:
            raise _refused("purchase_unknown", str(exc)) from exc
        if active is None:
            raise _refused("purchase_unknown", "the store knows no such subscription")
        self._claim(user_id, token, product, active, asked)
        package = self._ctx.settings.rustore_package_name
        if active and package:
            try:
                client.acknowledge_subscription(package, product.id, token)
            except (ProviderUnavailable, ProviderRefused):
                # Optional for RuStore; the next verify acknowledges again.
                log.warning("RuStore subscription not acknowledged", exc_info=True)
        return SubscriptionVerified(product.id, product.plan or "", active)

    # --- the store's notification ---------------------------------------------------------------

    def apply_notification(
        self, invoice_id: str, status_at: datetime, *, sandbox: bool, token: str | None = None
    ) -> bool:
        """Apply what the store now says of ``invoice_id``, told of a change at ``status_at``;
        ``token``: the notification's ``purchase_token`` (a subscription's token, for a
        subscription's invoice). ``False``: nothing to do (stale, of the other environment, or
        of no product we sell)."""
        client = self.rustore
        if client is None:
            raise ProviderUnavailable("RuStore is not configured on this server")
        if sandbox != self._ctx.settings.rustore_sandbox:
            log.info("RuStore notification of the other environment ignored")
            return False
        if self._applied_later(purchase_ref(invoice_id), status_at):
            return False
        truth = client.purchase(invoice_id)  # unreachable: raises, the inbox retries
        if truth is None:
            log.warning(
                "RuStore notified an invoice it does not know", extra={"invoice": invoice_id}
            )
            return False
        product = self._products.get(truth.product_id or "")
        if product is not None and product.kind == "subscription":
            return self._subscription_notified(client, truth, product, token, status_at)
        if product is None:
            log.warning("RuStore purchase of a product not in the catalogue")
            return False
        truth = self._confirm_if_held(client, truth, inbox=True)
        user_id = self._known_user(truth.developer_payload)
        self._apply(truth, user_id, product, status_at)
        if truth.status in GRANTING and user_id is not None:
            self._credit(truth, user_id, product)
        return True

    # --- applying -----------------------------------------------------------------------------

    def _apply(
        self, truth: RuStorePurchase, user_id: str | None, product: Product, at: datetime
    ) -> None:
        """Record ``truth`` unless a later status is recorded; then take back what a refund or
        reversal took back."""
        ref = purchase_ref(truth.invoice_id)
        _once_inserted(lambda: self._record(ref, truth, user_id, product, at))
        if truth.status in TAKEN_BACK:
            self._claw_back(ref, truth.status)

    def _record(
        self,
        ref: str,
        truth: RuStorePurchase,
        user_id: str | None,
        product: Product,
        at: datetime,
    ) -> None:
        rank = RANK[truth.status]
        now = self._ctx.clock.now()
        with transaction(self._ctx.write) as session:
            row = session.get(StorePurchase, ref, with_for_update=True)
            if row is None:
                row = StorePurchase(
                    ref=ref,
                    store=StoreName.RUSTORE.value,
                    invoice_id=truth.invoice_id,
                    user_id=user_id,
                    product_id=product.id,
                    status=truth.status.value,
                    status_rank=rank,
                    status_at=at,
                    points=0,
                    created_at=now,
                    updated_at=now,
                )
                session.add(row)
            elif rank > row.status_rank:
                row.status, row.status_rank = truth.status.value, rank
                row.status_at = max(at, row.status_at)
                row.updated_at = now
            if row.user_id is None and user_id is not None:
                row.user_id = user_id

    def _credit(
        self, truth: RuStorePurchase, user_id: str, product: Product
    ) -> tuple[Balance, bool]:
        ref = purchase_ref(truth.invoice_id)
        points = product.points or 0
        try:
            outcome = self._points.credit(
                user_id,
                points,
                kind=Kind.PURCHASE,
                actor=ACTOR,
                reason=f"store purchase {product.id}",
                external_ref=ref,
            )
        except IdempotencyConflict as exc:
            raise IdempotencyConflict(str(exc), reason="purchase_other_account") from exc
        with transaction(self._ctx.write) as session:
            row = session.get(StorePurchase, ref, with_for_update=True)
            if row is not None:
                row.points = points
                refunded = InvoiceStatus(row.status) in TAKEN_BACK
            else:
                refunded = False
        if refunded:
            self._claw_back(ref, InvoiceStatus.REFUNDED)
        return outcome.balance, outcome.replayed

    def _claw_back(self, ref: str, status: InvoiceStatus) -> None:
        with transaction(self._ctx.read) as session:
            credit = session.scalar(
                select(PointsTransaction).where(
                    PointsTransaction.kind == Kind.PURCHASE.value,
                    PointsTransaction.external_ref == ref,
                )
            )
            if credit is None:
                return  # nothing was credited: nothing to take back
            user_id, amount = credit.user_id, credit.amount
        kind = Kind.REVERSAL if status is InvoiceStatus.REVERSED else Kind.REFUND
        self._points.claw_back(
            user_id,
            amount,
            kind=kind,
            external_ref=ref,
            actor=ACTOR,
            reason=f"the store {status.value.lower()} the purchase",
        )

    def recheck_subscription(self, ref: str) -> bool:
        """The reconciler's call: ask the store again about the subscription ``ref`` and apply
        the answer as a verify would. ``False``: nothing to ask (its token was cut by 0016, its
        product is gone, or it has no owner)."""
        client = self.rustore
        with transaction(self._ctx.read) as session:
            row = session.get(StorePurchase, ref)
            token = token_of(row) if row is not None else None
            user_id = row.user_id if row is not None else None
            product = self._products.get(row.product_id) if row is not None else None
        if client is None or token is None or user_id is None or product is None:
            return False
        asked = self._ctx.clock.now()
        # Unreachable: raises, the next round asks again. Unknown to the store: not active.
        active = bool(client.subscription_active(token))
        self._claim(user_id, token, product, active, asked)
        return True

    def _subscription_notified(
        self,
        client: RuStoreClient,
        truth: RuStorePurchase,
        product: Product,
        token: str | None,
        at: datetime,
    ) -> bool:
        """A subscription's invoice changed (paid, renewed, failed, refunded): its state is
        asked of the store now and applied as of ``at``, so the plan follows the store without
        waiting for the reconciler or the app's next verify."""
        if token is None:
            log.warning("RuStore notified a subscription's invoice without its token")
            return False
        with transaction(self._ctx.read) as session:
            row = session.get(StorePurchase, subscription_ref(token))
            if row is not None and at < row.status_at:
                return False  # a later state was applied: what was told at ``at`` is older
            owner = row.user_id if row is not None else None
        user_id = owner or self._known_user(truth.developer_payload)
        if user_id is None:
            return False  # no account to grant it to: the app's verify will claim it
        active = client.subscription_active(token)  # unreachable: raises, the inbox retries
        if active is None and row is None:
            return False  # neither the store nor we know it
        self._claim(user_id, token, product, bool(active), at)
        return True

    def _claim(
        self, user_id: str, token: str, product: Product, active: bool, at: datetime
    ) -> None:
        _once_inserted(lambda: claim_subscription(self._ctx, user_id, token, product, active, at))

    # --- the store ----------------------------------------------------------------------------

    def _client(self, store: StoreName) -> RuStoreClient:
        if store is not StoreName.RUSTORE or self.rustore is None:
            raise Forbidden(
                f"{store.value} purchases are not accepted: the store is not configured"
            )
        return self.rustore

    @staticmethod
    def _fetch(client: RuStoreClient, invoice_id: str) -> RuStorePurchase | None:
        try:
            return client.purchase(invoice_id)
        except ProviderUnavailable as exc:
            raise _unavailable() from exc
        except ProviderRefused as exc:
            raise _refused("purchase_unknown", str(exc)) from exc

    def _confirm_if_held(
        self, client: RuStoreClient, truth: RuStorePurchase, *, inbox: bool = False
    ) -> RuStorePurchase:
        """A consumable's money on hold (``PAID``) is ours to take: confirm it, then read the
        store's truth again (``CONFIRMED``). A refused confirmation is most often another path
        (a concurrent verify, the worker) having confirmed first: the truth read next decides."""
        if truth.status is not InvoiceStatus.PAID or truth.purchase_id is None:
            return truth
        refusal: ProviderRefused | None = None
        try:
            try:
                client.confirm(truth.purchase_id)
            except ProviderRefused as exc:
                refusal = exc
            again = client.purchase(truth.invoice_id) or truth
        except (ProviderUnavailable, ProviderRefused) as exc:
            if inbox:
                raise
            raise _unavailable() from exc
        if again.status is InvoiceStatus.PAID and refusal is not None:
            if inbox:
                raise refusal  # still held: the inbox retries the confirmation later
            raise _refused(
                "purchase_not_paid", f"the store refused the confirmation: {refusal}"
            ) from refusal
        return again

    def _applied_later(self, ref: str, at: datetime) -> bool:
        """A state of the purchase ``ref`` later than ``at`` was applied: what was told at
        ``at`` is older, and never moves it back."""
        with transaction(self._ctx.read) as session:
            row = session.get(StorePurchase, ref)
            return row is not None and at < row.status_at

    def _known_user(self, user_id: str | None) -> str | None:
        if not user_id or len(user_id) > 36:
            return None
        with transaction(self._ctx.read) as session:
            return user_id if session.get(User, user_id) is not None else None


def _once_inserted(write: Callable[[], None]) -> None:
    """Run ``write`` (a read-lock-then-insert-or-update transaction); when a concurrent path
    inserted the same row first (the primary key refuses ours), run it again: the row is there
    to lock and update now."""
    try:
        write()
    except IntegrityError:
        write()


def _unavailable() -> ServiceUnavailable:
    return ServiceUnavailable("the store is unavailable; try again", headers={"Retry-After": "30"})
