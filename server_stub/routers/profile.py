"""``/user/profile`` and ``/user/update`` (seed 001's names): the customer's profile in one read,
and the change of e-mail or password (docs/points.md, "The profile")."""

from __future__ import annotations

from fastapi import APIRouter

from agent.protocol import ErrorCode, ProfileOut, ProfileSubscription, ProfileUpdate

from ..deps import PrincipalDep, ServicesDep
from ..problems import AUTH_ERRORS, problem_responses
from ..services.profile import Profile
from .points import balance_out

router = APIRouter(prefix="/user", tags=["profile"])


def profile_out(profile: Profile) -> ProfileOut:
    sub = profile.subscription
    return ProfileOut(
        id=profile.id,
        email=profile.email,
        created_at=profile.created_at,
        plan=profile.plan,
        points=balance_out(profile.points),
        subscription=None
        if sub is None
        else ProfileSubscription(
            plan=sub.plan,
            state=sub.state,
            current_period_end=sub.current_period_end,
            cancel_at_period_end=sub.cancel_at_period_end,
            entitled_until=sub.entitled_until,
        ),
    )


@router.get(
    "/profile",
    response_model=ProfileOut,
    responses=problem_responses(*AUTH_ERRORS),
    summary="Who this account is, its plan, subscription and points balance",
)
def user_profile(principal: PrincipalDep, services: ServicesDep) -> ProfileOut:
    return profile_out(services.profile.profile(principal.user.id))


@router.patch(
    "/update",
    response_model=ProfileOut,
    responses=problem_responses(
        *AUTH_ERRORS, ErrorCode.INVALID_CREDENTIALS, ErrorCode.ALREADY_EXISTS
    ),
    summary="Change the e-mail or the password (the current password confirms)",
    description="A wrong current password is 401 `invalid_credentials` and changes nothing; an "
    "e-mail another account has is 409 `already_exists`. A new password ends every other "
    "session of the account: their refresh tokens are refused from now on.",
)
def user_update(body: ProfileUpdate, principal: PrincipalDep, services: ServicesDep) -> ProfileOut:
    return profile_out(
        services.profile.update(
            principal,
            body.current_password,
            email=str(body.email) if body.email is not None else None,
            new_password=body.new_password,
        )
    )
