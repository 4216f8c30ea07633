"""``/products`` and the store's purchases: verify a purchase into points (``/payments/verify``,
``/points/buy``) or a plan (``/subscriptions/verify``); docs/points.md, "Store purchases".

Each verify asks the store, commits what the purchase grants exactly once, and only then answers,
so the client is never ahead of the server. A verify talks to the store over the network: it
always runs off the event loop.
"""

from __future__ import annotations

from fastapi import APIRouter, Response, status
from fastapi.concurrency import run_in_threadpool

from agent.protocol import (
    ErrorCode,
    PaymentVerifyRequest,
    PointsBuyRequest,
    ProductKind,
    ProductList,
    ProductOut,
    PurchaseVerified,
    StoreSubscriptionVerified,
    SubscriptionVerifyRequest,
)

from ..deps import PrincipalDep, ServicesDep
from ..problems import problem_responses
from ..services.store.products import Product
from ..services.store.purchases import Verified
from ..wiring import Services
from .points import balance_out

router = APIRouter(tags=["store"])

_VERIFY_REFUSALS = problem_responses(
    ErrorCode.TOKEN_INVALID,
    ErrorCode.TOKEN_EXPIRED,
    ErrorCode.FORBIDDEN,
    ErrorCode.VALIDATION_ERROR,
    ErrorCode.IDEMPOTENCY_CONFLICT,
    ErrorCode.SERVICE_UNAVAILABLE,
)
#: A verify of a purchase the buyer has not paid yet: nothing credited, ask again.
_VERIFY_ANSWERS = {
    **_VERIFY_REFUSALS,
    status.HTTP_202_ACCEPTED: {
        "model": PurchaseVerified,
        "description": "Not paid yet (the store says CREATED or EXECUTED): `pending` is true, "
        "nothing was credited; verify again later.",
    },
}


def product_out(product: Product) -> ProductOut:
    return ProductOut(
        id=product.id,
        kind=ProductKind(product.kind),
        title=product.title,
        price_minor=product.price_minor,
        currency=product.currency,
        points=product.points,
        plan=product.plan,
    )


@router.get(
    "/products",
    response_model=ProductList,
    # The edge's answers that apply to a route without input: the body-size cap (any method
    # may carry a body), the rate limit, the database.
    responses=problem_responses(
        ErrorCode.PAYLOAD_TOO_LARGE,
        ErrorCode.RATE_LIMITED,
        ErrorCode.SERVICE_UNAVAILABLE,
        common=False,
    ),
)
async def list_products(services: ServicesDep) -> ProductList:
    """What the app sells through its store, with what each grants (public, cached)."""
    return ProductList(products=[product_out(p) for p in services.store.products.active()])


def _verified(done: Verified) -> PurchaseVerified:
    return PurchaseVerified(
        purchase_id=done.purchase_id,
        product_id=done.product_id,
        status=done.status,
        points=done.points,
        replayed=done.replayed,
        balance=balance_out(done.balance),
        pending=done.pending,
    )


async def _verify(
    services: Services,
    response: Response,
    user_id: str,
    body: PaymentVerifyRequest | PointsBuyRequest,
    *,
    order_id: str | None = None,
    points_only: bool = False,
) -> PurchaseVerified:
    done = await run_in_threadpool(
        services.store.verify_payment,
        user_id,
        body.provider,
        body.purchase_id,
        body.product_id,
        order_id=order_id,
        points_only=points_only,
    )
    if done.pending:
        response.status_code = status.HTTP_202_ACCEPTED
    return _verified(done)


@router.post("/payments/verify", response_model=PurchaseVerified, responses=_VERIFY_ANSWERS)
async def verify_payment(
    body: PaymentVerifyRequest, principal: PrincipalDep, services: ServicesDep, response: Response
) -> PurchaseVerified:
    """Verify a store purchase with the store and credit what it grants, once; answered after
    the credit is committed. 202 ``pending`` while the buyer has not paid; 422 with ``reason``
    ``purchase_not_paid`` (it ended unpaid)/``purchase_mismatch``/``purchase_unknown``; 409
    ``purchase_other_account``."""
    return await _verify(services, response, principal.user.id, body, order_id=body.order_id)


@router.post("/points/buy", response_model=PurchaseVerified, responses=_VERIFY_ANSWERS)
async def buy_points(
    body: PointsBuyRequest, principal: PrincipalDep, services: ServicesDep, response: Response
) -> PurchaseVerified:
    """``/payments/verify`` for a points product (a consumable): the same exactly-once path."""
    return await _verify(services, response, principal.user.id, body, points_only=True)


@router.post(
    "/subscriptions/verify",
    response_model=StoreSubscriptionVerified,
    responses=_VERIFY_REFUSALS,
)
async def verify_subscription(
    body: SubscriptionVerifyRequest, principal: PrincipalDep, services: ServicesDep
) -> StoreSubscriptionVerified:
    """Ask the store whether a subscription is active, record it for this account (once), and
    put its plan in force (or let it lapse) before answering."""
    done = await run_in_threadpool(
        services.store.verify_subscription,
        principal.user.id,
        body.provider,
        body.subscription_token,
        body.product_id,
    )
    return StoreSubscriptionVerified(product_id=done.product_id, plan=done.plan, active=done.active)
