"""``/plans`` and ``/subscriptions/...``: the customer's side of billing (docs/billing.md,
"Plans, subscriptions and entitlement"). Thin: the billing service owns the rules and the
transactions; each route is one call, so a wrapper (Idempotency-Key) fits around it.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from agent.protocol import (
    INVOICES_PAGE_DEFAULT,
    INVOICES_PAGE_MAX,
    CustomerInvoiceList,
    ErrorCode,
    PlanChangeDone,
    PlanChangeOut,
    PlanChangeRequest,
    PlanList,
    SubscriptionCancel,
    SubscriptionCreate,
    SubscriptionCreated,
    SubscriptionRenewed,
    SubscriptionStatus,
)

from ..deps import PrincipalDep, ServicesDep
from ..problems import AUTH_ERRORS, problem_responses
from ..services.billing.common import Actor, SubscriptionView
from .billing_schemas import (
    customer_invoices_out,
    plan_change_out,
    plan_out,
    renewed_out,
    subscription_out,
)
from .idempotent import UserIdempotent

router = APIRouter(tags=["billing"])

#: No subscription (404), or its state refuses the move (422); a reused Idempotency-Key (409).
_MOVE_ERRORS = problem_responses(*AUTH_ERRORS, ErrorCode.NOT_FOUND, ErrorCode.IDEMPOTENCY_CONFLICT)


@router.get(
    "/plans",
    response_model=PlanList,
    responses=problem_responses(),
    summary="The plans on offer, with their prices (no token needed)",
)
def list_plans(services: ServicesDep) -> PlanList:
    return PlanList(plans=[plan_out(p) for p in services.billing.plans.list(offered_only=True)])


@router.get(
    "/subscriptions/status",
    response_model=SubscriptionStatus,
    responses=problem_responses(*AUTH_ERRORS),
    summary="This account's subscription: its state, dates and entitlement",
)
def subscription_status(principal: PrincipalDep, services: ServicesDep) -> SubscriptionStatus:
    view = services.billing.status(principal.user.id)
    return SubscriptionStatus(subscription=subscription_out(view) if view else None)


@router.get(
    "/subscriptions/invoices",
    response_model=CustomerInvoiceList,
    responses=problem_responses(*AUTH_ERRORS, ErrorCode.NOT_FOUND),
    summary="This account's invoices, newest first, with their lines, credit notes and payments",
    description="One page of at most `limit` invoices. Amounts are integer minor units of the "
    "invoice's currency; a credit line is negative. For the next (older) page pass the "
    "answer's `next_before` as `before`; a `before` that is not one of this account's "
    "invoices is a 404.",
)
def list_invoices(
    principal: PrincipalDep,
    services: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=INVOICES_PAGE_MAX)] = INVOICES_PAGE_DEFAULT,
    before: Annotated[
        str | None, Query(pattern=r"^[A-Za-z0-9-]{1,64}$", description="an invoice's id")
    ] = None,
) -> CustomerInvoiceList:
    page = services.billing.invoices(principal.user.id, limit=limit, before=before)
    return customer_invoices_out(page)


@router.post(
    "/subscriptions/create",
    status_code=status.HTTP_201_CREATED,
    response_model=SubscriptionCreated,
    responses=problem_responses(
        *AUTH_ERRORS,
        ErrorCode.NOT_FOUND,
        ErrorCode.ALREADY_EXISTS,
        ErrorCode.SERVICE_UNAVAILABLE,
        ErrorCode.IDEMPOTENCY_CONFLICT,
    ),
    summary="Subscribe to a plan: returns the provider's checkout for the first invoice",
    description="The subscription is `incomplete` until the provider reports the payment (or, "
    "for a plan with a trial, the kept card). A provider this server is not configured for is "
    "refused (503: billing fails closed). An unpaid checkout of this account is replaced; a "
    "live subscription is not created twice (409); one an app store manages is changed in the "
    "store (422 `store_managed`).",
)
async def create_subscription(
    body: SubscriptionCreate, principal: PrincipalDep, services: ServicesDep, idem: UserIdempotent
) -> Response:
    def create() -> SubscriptionCreated:
        created = services.billing.create_subscription(principal.user.id, body.plan, body.provider)
        return SubscriptionCreated(
            subscription=subscription_out(created.subscription),
            invoice_id=created.invoice_id,
            checkout_url=created.checkout_url,
        )

    return await idem.run(create)


@router.post(
    "/subscriptions/cancel",
    response_model=SubscriptionStatus,
    responses=_MOVE_ERRORS,
    summary="Cancel at the period's end (default) or now; what was paid stays in force",
)
async def cancel_subscription(
    body: SubscriptionCancel, principal: PrincipalDep, services: ServicesDep, idem: UserIdempotent
) -> Response:
    user = principal.user.id
    return await idem.run(
        lambda: _status(services.billing.cancel(Actor.user(user), user, body.when))
    )


@router.post(
    "/subscriptions/pause",
    response_model=SubscriptionStatus,
    responses=_MOVE_ERRORS,
    summary="Pause renewals; what was paid stays in force until it runs out",
)
async def pause_subscription(
    principal: PrincipalDep, services: ServicesDep, idem: UserIdempotent
) -> Response:
    user = principal.user.id
    return await idem.run(lambda: _status(services.billing.pause(Actor.user(user), user)))


@router.post(
    "/subscriptions/resume",
    response_model=SubscriptionStatus,
    responses=_MOVE_ERRORS,
    summary="Resume a paused subscription, or undo a cancel at period end",
)
async def resume_subscription(
    principal: PrincipalDep, services: ServicesDep, idem: UserIdempotent
) -> Response:
    user = principal.user.id
    return await idem.run(lambda: _status(services.billing.resume(Actor.user(user), user)))


@router.post(
    "/subscriptions/change-plan/preview",
    response_model=PlanChangeOut,
    responses=problem_responses(*AUTH_ERRORS, ErrorCode.NOT_FOUND),
    summary="What a plan change would do: its direction and, now, the prorated amounts",
    description="No side effects. The direction is stated from the plans' ranks. For `now` "
    "the credit for the unused time, the charge for the new plan and their net, with the "
    "lines and their periods (exactly what the change bills); for `period_end` the date it "
    "takes effect and the new price. A change the subscription refuses is a 422.",
)
def preview_plan_change(
    body: PlanChangeRequest, principal: PrincipalDep, services: ServicesDep
) -> PlanChangeOut:
    return plan_change_out(services.billing.preview_change(principal.user.id, body.plan, body.when))


@router.post(
    "/subscriptions/change-plan",
    response_model=PlanChangeDone,
    responses=problem_responses(
        *AUTH_ERRORS,
        ErrorCode.NOT_FOUND,
        ErrorCode.SERVICE_UNAVAILABLE,
        ErrorCode.IDEMPOTENCY_CONFLICT,
    ),
    summary="Change the plan now (prorated) or at the period's end (scheduled)",
    description="`now`: a net to pay is charged on the kept card first and the plan switches "
    "only if it succeeds (a decline is a 422 and changes nothing); a net credit becomes a "
    "credit note for the next invoice. `period_end`: stored, applied at the renewal. Same, "
    "retired or other-currency plan, or a subscription not active/trialing: 422.",
)
async def change_plan(
    body: PlanChangeRequest, principal: PrincipalDep, services: ServicesDep, idem: UserIdempotent
) -> Response:
    user = principal.user.id

    def change() -> PlanChangeDone:
        done = services.billing.change_plan(Actor.user(user), user, body.plan, body.when)
        return PlanChangeDone(
            change=plan_change_out(done.change), subscription=subscription_out(done.subscription)
        )

    return await idem.run(change)


@router.post(
    "/subscriptions/renew",
    response_model=SubscriptionRenewed,
    responses=problem_responses(
        *AUTH_ERRORS,
        ErrorCode.NOT_FOUND,
        ErrorCode.SERVICE_UNAVAILABLE,
        ErrorCode.IDEMPOTENCY_CONFLICT,
    ),
    summary="Pay the renewal that is due now: on the kept card, else at the provider's checkout",
    description="For a `past_due` or `unpaid` subscription: the kept card is charged for the "
    "open renewal invoice (as a dunning retry is); paid, the subscription is `active` and "
    "entitled to the invoice's period end (`paid: true`). Declined, or no card kept: "
    "`paid: false` with the provider's `checkout_url` for that invoice, to pay with another "
    "card. Nothing due (active, trialing, paused, ended): 422 `validation_error`; no "
    "subscription: 404.",
)
async def renew_subscription(
    principal: PrincipalDep, services: ServicesDep, idem: UserIdempotent
) -> Response:
    user = principal.user.id

    return await idem.run(lambda: renewed_out(services.billing.renew_now(user)))


def _status(view: SubscriptionView) -> SubscriptionStatus:
    return SubscriptionStatus(subscription=subscription_out(view))
