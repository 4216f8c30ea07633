"""The demo plan and user, seeded by `tgflow-server demo` and by the desktop's `tgflow --demo`."""

from __future__ import annotations

from .wiring import Services

DEMO_EMAIL = "demo@tgflow.example"
DEMO_PLAN = "demo"


def seed_demo_user(
    services: Services,
    password: str,
    *,
    email: str = DEMO_EMAIL,
    monthly_quota: int = 1000,
    max_devices: int = 2,
) -> None:
    """Create (or update) the demo plan and put the demo user on it with ``password``.

    Run again, it replaces the user's password and the plan's limits.
    """
    services.plans.upsert(
        DEMO_PLAN, monthly_quota=monthly_quota, max_devices=max_devices, features=["broadcast"]
    )
    services.auth.create_user(email, password, DEMO_PLAN)
