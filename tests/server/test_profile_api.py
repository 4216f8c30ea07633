"""``/user/profile`` and ``/user/update`` on SQLite and PostgreSQL: the profile in one read, an
e-mail or password change confirmed by the current password, and a new password ending every
other session."""

from __future__ import annotations

from typing import Any

import pytest

from server_stub.services.points.ledger import Kind
from tests.helpers.api import PASSWORD, assert_problem, bearer, fingerprint, register
from tests.helpers.backend import Backend


def login(backend: Backend, email: str, password: str, fp: str) -> Any:
    return backend.client.post(
        "/auth/login", json={"email": email, "password": password, "device_fingerprint": fp}
    )


def test_the_profile_has_the_plan_the_subscription_and_the_points(backend: Backend) -> None:
    account = register(backend.client, "reader@example.com")
    backend.services.points.credit(account["user"]["id"], 40, kind=Kind.GRANT, actor="system")
    r = backend.client.get("/user/profile", headers=bearer(account["token"]))
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["id"], body["email"]) == (account["user"]["id"], "reader@example.com")
    assert body["points"] == {"balance": 40, "held": 0, "shortfall": 0}
    assert body["subscription"] is None
    assert body["plan"] == backend.settings.default_plan
    assert_problem(backend.client.get("/user/profile"), 401, "token_invalid")


def test_a_new_email_needs_the_current_password_and_must_be_free(backend: Backend) -> None:
    fp = fingerprint()
    account = register(backend.client, "old@example.com", fp)
    register(backend.client, "taken@example.com")
    h = bearer(account["token"])
    wrong = backend.client.patch(
        "/user/update", headers=h, json={"current_password": "not-it-at-all", "email": "n@x.io"}
    )
    assert_problem(wrong, 401, "invalid_credentials")
    taken = backend.client.patch(
        "/user/update", headers=h, json={"current_password": PASSWORD, "email": "taken@example.com"}
    )
    assert_problem(taken, 409, "already_exists")
    moved = backend.client.patch(
        "/user/update", headers=h, json={"current_password": PASSWORD, "email": "new@example.com"}
    )
    assert moved.status_code == 200, moved.text
    assert moved.json()["email"] == "new@example.com"
    assert login(backend, "new@example.com", PASSWORD, fp).status_code == 200
    assert_problem(login(backend, "old@example.com", PASSWORD, fp), 401, "invalid_credentials")


def test_a_new_password_ends_every_other_session(backend: Backend) -> None:
    fp = fingerprint()
    here = register(backend.client, "owner@example.com", fp)
    there = login(backend, "owner@example.com", PASSWORD, fp).json()
    r = backend.client.patch(
        "/user/update",
        headers=bearer(here["token"]),
        json={"current_password": PASSWORD, "new_password": "a much newer secret"},
    )
    assert r.status_code == 200, r.text
    # The other session is over: its access token and its refresh token are refused.
    assert_problem(
        backend.client.get("/user/profile", headers=bearer(there["token"])), 401, "token_invalid"
    )
    refused = backend.client.post(
        "/auth/refresh", json={"refresh_token": there["refresh_token"], "device_fingerprint": fp}
    )
    assert_problem(refused, 401, "token_invalid")
    # This one goes on, and the new password is the one that works.
    assert backend.client.get("/user/profile", headers=bearer(here["token"])).status_code == 200
    kept = backend.client.post(
        "/auth/refresh", json={"refresh_token": here["refresh_token"], "device_fingerprint": fp}
    )
    assert kept.status_code == 200, kept.text
    assert login(backend, "owner@example.com", "a much newer secret", fp).status_code == 200
    assert_problem(login(backend, "owner@example.com", PASSWORD, fp), 401, "invalid_credentials")


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"current_password": PASSWORD},
        {"current_password": PASSWORD, "email": None},
        {"current_password": PASSWORD, "email": "not an e-mail"},
        {"current_password": PASSWORD, "new_password": "short"},
        {"current_password": PASSWORD, "email": "a@b.io", "plan": "free"},
    ],
)
def test_bad_updates_are_422_and_change_nothing(backend: Backend, body: dict[str, Any]) -> None:
    account = register(backend.client, "still@example.com")
    r = backend.client.patch("/user/update", headers=bearer(account["token"]), json=body)
    assert_problem(r, 422, "validation_error")
    profile = backend.client.get("/user/profile", headers=bearer(account["token"])).json()
    assert profile["email"] == "still@example.com"
