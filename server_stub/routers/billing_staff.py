"""``/staff/billing/plans``: the operator's plans and prices (docs/billing.md, "Plans,
subscriptions and entitlement"). Reading is ``billing.read``; changing the catalogue is
``billing.plans.write`` (Admin); every change is audited by the billing service.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response, status

from agent.protocol import PLAN_NAME_PATTERN, ErrorCode

from ..deps import ServicesDep
from ..errors import ValidationFailed
from ..services.billing.plans import PlanChanges, PlanSpec
from ..services.staff import Permission
from .billing_payment_schemas import PaymentList, PaymentOut, RefundIn, RefundOut
from .billing_schemas import (
    PlanCreate,
    PlanPatch,
    StaffPlanList,
    StaffPlanOut,
    SubscriptionHistoryOut,
    history_out,
    staff_plan_out,
)
from .idempotent import StaffIdempotent
from .staff_auth import StaffDep, staff_endpoint

router = APIRouter(prefix="/staff/billing", tags=["billing"])

PlanNamePath = Annotated[str, Path(pattern=PLAN_NAME_PATTERN)]
SubscriptionId = Annotated[str, Path(pattern=r"^[A-Za-z0-9-]{1,64}$")]


@staff_endpoint(
    router,
    "GET",
    "/plans",
    Permission.BILLING_READ,
    response_model=StaffPlanList,
    summary="Every plan, retired ones too",
)
def staff_list_plans(services: ServicesDep) -> StaffPlanList:
    return StaffPlanList(plans=[staff_plan_out(p) for p in services.billing.plans.list()])


@staff_endpoint(
    router,
    "POST",
    "/plans",
    Permission.BILLING_PLANS_WRITE,
    ErrorCode.ALREADY_EXISTS,
    status_code=status.HTTP_201_CREATED,
    response_model=StaffPlanOut,
    summary="Add a plan with its price (Admin)",
)
def staff_create_plan(body: PlanCreate, principal: StaffDep, services: ServicesDep) -> StaffPlanOut:
    spec = PlanSpec(**{**body.model_dump(), "features": tuple(body.features)})
    return staff_plan_out(services.billing.plans.create(principal.actor, spec))


@staff_endpoint(
    router,
    "PATCH",
    "/plans/{name}",
    Permission.BILLING_PLANS_WRITE,
    ErrorCode.NOT_FOUND,
    response_model=StaffPlanOut,
    summary="Change a plan's price, tier, trial or limits (Admin)",
    description="A new price applies to new subscriptions; existing subscribers keep theirs "
    "until they change plan. Quota, devices and features apply to every subscriber at once.",
)
def staff_change_plan(
    name: PlanNamePath, body: PlanPatch, principal: StaffDep, services: ServicesDep
) -> StaffPlanOut:
    values = body.model_dump(exclude_none=True)
    if "features" in values:
        values["features"] = tuple(values["features"])
    plan = services.billing.plans.change(principal.actor, name, PlanChanges(**values))
    return staff_plan_out(plan)


@staff_endpoint(
    router,
    "POST",
    "/plans/{name}/retire",
    Permission.BILLING_PLANS_WRITE,
    ErrorCode.NOT_FOUND,
    response_model=StaffPlanOut,
    summary="Offer a plan no more; its subscribers keep it (Admin)",
)
def staff_retire_plan(
    name: PlanNamePath, principal: StaffDep, services: ServicesDep
) -> StaffPlanOut:
    return staff_plan_out(services.billing.plans.retire(principal.actor, name))


@staff_endpoint(
    router,
    "GET",
    "/subscriptions/{subscription_id}",
    Permission.BILLING_READ,
    ErrorCode.NOT_FOUND,
    response_model=SubscriptionHistoryOut,
    summary="A subscription with every transition (who or what, when, why) and its invoices",
)
def staff_subscription(
    subscription_id: SubscriptionId, services: ServicesDep
) -> SubscriptionHistoryOut:
    return history_out(services.billing.history(subscription_id))


PaymentId = Annotated[str, Path(pattern=r"^[A-Za-z0-9-]{1,64}$")]
OptionalId = Annotated[str | None, Query(pattern=r"^[A-Za-z0-9-]{1,64}$")]


@staff_endpoint(
    router,
    "GET",
    "/payments",
    Permission.BILLING_READ,
    ErrorCode.VALIDATION_ERROR,
    response_model=PaymentList,
    summary="A user's or a subscription's payments with what was refunded (one filter needed)",
)
def staff_list_payments(
    services: ServicesDep, user: OptionalId = None, subscription: OptionalId = None
) -> PaymentList:
    if user is None and subscription is None:
        raise ValidationFailed("name a user or a subscription")
    payments = services.billing.payments(user_id=user, subscription_id=subscription)
    return PaymentList(payments=[PaymentOut.of(p) for p in payments])


@staff_endpoint(
    router,
    "POST",
    "/payments/{payment_id}/refund",
    Permission.BILLING_REFUND,
    ErrorCode.NOT_FOUND,
    ErrorCode.VALIDATION_ERROR,
    ErrorCode.SERVICE_UNAVAILABLE,
    ErrorCode.IDEMPOTENCY_CONFLICT,
    status_code=status.HTTP_200_OK,
    response_model=RefundOut,
    summary="Refund a payment through its provider, in full or in part (Admin)",
    description="Without `amount_minor`, all that is not yet refunded. A full refund of the "
    "current period's payment ends the subscription's entitlement now; a partial one does not. "
    "A provider's refusal is 422 and nothing is booked.",
)
async def staff_refund_payment(
    payment_id: PaymentId,
    principal: StaffDep,
    services: ServicesDep,
    idem: StaffIdempotent,
    body: RefundIn | None = None,
) -> Response:
    amount = body.amount_minor if body is not None else None
    return await idem.run(
        lambda: RefundOut.of(services.billing.refund(principal.actor, payment_id, amount))
    )
