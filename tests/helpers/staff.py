"""Staff accounts for the server tests: created through the service, logged in over HTTP."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pyotp

from server_stub.clock import FakeClock
from server_stub.services.staff import Role
from server_stub.wiring import Services

STAFF_PASSWORD = "staff password 42"


@dataclass
class StaffLogin:
    id: str
    email: str
    role: Role
    token: str
    refresh_token: str
    secret: str | None
    recovery_codes: list[str]

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def code_at(secret: str, clock: FakeClock, offset_steps: int = 0) -> str:
    """The TOTP code of ``secret`` at the fake clock's time (plus whole 30 s steps)."""
    return pyotp.TOTP(secret).at(clock.now() + timedelta(seconds=30 * offset_steps))


def login(client: httpx.Client, email: str, **extra: Any) -> httpx.Response:
    return client.post("/staff/login", json={"email": email, "password": STAFF_PASSWORD, **extra})


def new_staff(
    client: httpx.Client, services: Services, clock: FakeClock, role: Role, *, enrol: bool = True
) -> StaffLogin:
    """A staff member of ``role``, logged in; enrolled in TOTP (and logged in with it) unless
    ``enrol`` is off. The clock moves one TOTP step after enrolment, so a test's next code is
    a fresh one."""
    email = f"{role}-{secrets.token_hex(4)}@staff.example"
    staff = services.staff.create("test", email, role.title(), role, STAFF_PASSWORD)
    r = login(client, email)
    assert r.status_code == 200, r.text
    body = r.json()
    if not enrol:
        return StaffLogin(staff.id, email, role, body["token"], body["refresh_token"], None, [])
    headers = {"Authorization": f"Bearer {body['token']}"}
    setup = client.post("/staff/me/totp/setup", headers=headers)
    assert setup.status_code == 200, setup.text
    secret = setup.json()["secret"]
    enabled = client.post(
        "/staff/me/totp/enable", headers=headers, json={"otp": code_at(secret, clock)}
    )
    assert enabled.status_code == 200, enabled.text
    tokens = enabled.json()["tokens"]
    clock.advance(30)
    return StaffLogin(
        staff.id,
        email,
        role,
        tokens["token"],
        tokens["refresh_token"],
        secret,
        enabled.json()["recovery_codes"],
    )
