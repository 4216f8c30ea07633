"""The customer's profile (seed 001: ``GET /user/profile``, ``PATCH /user/update``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import ConfigDict, EmailStr, model_validator
from pydantic.json_schema import SkipJsonSchema

from .billing import SubscriptionState
from .core import LoginPassword, Password, _Request, _Response
from .points import PointsBalance

NoNull = SkipJsonSchema[None]


class ProfileSubscription(_Response):
    plan: str
    state: SubscriptionState
    current_period_end: datetime | None
    cancel_at_period_end: bool
    entitled_until: datetime | None


class ProfileOut(_Response):
    id: str
    email: str
    created_at: datetime
    #: The plan the license serves now (``None``: no license).
    plan: str | None
    points: PointsBalance
    subscription: ProfileSubscription | None


class ProfileUpdate(_Request):
    """Change the e-mail, the password, or both; the current password confirms either. A new
    password ends every other session of the account (their refresh tokens stop working)."""

    model_config = ConfigDict(
        json_schema_extra={"anyOf": [{"required": ["email"]}, {"required": ["new_password"]}]}
    )

    current_password: LoginPassword
    email: EmailStr | NoNull = None
    new_password: Password | NoNull = None

    @model_validator(mode="before")
    @classmethod
    def _something_to_change(cls, data: Any) -> Any:
        if isinstance(data, dict):
            nulls = sorted(k for k in ("email", "new_password") if k in data and data[k] is None)
            if nulls:
                raise ValueError(f"may be left out but not null: {', '.join(nulls)}")
            if "email" not in data and "new_password" not in data:
                raise ValueError("name a new email or a new_password")
        return data
