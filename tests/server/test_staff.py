"""Staff roles, login with TOTP and the staff endpoints, over HTTP on SQLite and PostgreSQL.

The role matrix is generated from the one permission table (``ROLE_PERMISSIONS``) and the
``x-permission`` every ``/staff`` route names in the OpenAPI document.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from server_stub.routers.staff_auth import PERMISSION_KEY, PUBLIC
from server_stub.services.staff import ROLE_PERMISSIONS, Permission, Role, totp_required
from tests.helpers.api import assert_problem, bearer, register
from tests.helpers.backend import Backend
from tests.helpers.staff import STAFF_PASSWORD, code_at, login, new_staff


def staff_routes(backend: Backend) -> list[tuple[str, str, str]]:
    """(method, path, permission) of every staff route (each /staff route, and any other that
    names a permission); logout last (it ends the session)."""
    schema: dict[str, Any] = backend.client.get("/openapi.json").json()
    routes = [
        (method.upper(), path, operation.get(PERMISSION_KEY))
        for path, item in schema["paths"].items()
        for method, operation in item.items()
        if path.startswith("/staff") or PERMISSION_KEY in operation
    ]
    return sorted(routes, key=lambda r: (r[1] == "/staff/logout", r[1], r[0]))


def test_every_staff_route_names_a_known_permission(backend: Backend) -> None:
    routes = staff_routes(backend)
    assert len(routes) >= 70
    known = {p.value for p in Permission} | {PUBLIC}
    assert all(permission in known for _, _, permission in routes), routes
    assert {path for _, path, p in routes if p == PUBLIC} == {"/staff/login", "/staff/refresh"}


@pytest.mark.parametrize("role", list(Role))
def test_the_role_matrix(backend: Backend, role: Role) -> None:
    me = new_staff(backend.client, backend.services, backend.clock, role)
    checked = 0
    for method, path, permission in staff_routes(backend):
        if permission == PUBLIC:
            continue
        url = re.sub(r"\{[^}]+\}", "no-such-thing", path)
        r = backend.client.request(method, url, headers=me.headers, json={})
        if Permission(permission) in ROLE_PERMISSIONS[role]:
            assert r.status_code not in (401, 403), (role, method, path, r.text)
        else:
            assert_problem(r, 403, "forbidden")
        checked += 1
    assert checked >= 68


def test_totp_is_required_for_admin_and_signing_roles_only() -> None:
    assert {role for role in Role if totp_required(role)} == {
        Role.ADMIN,
        Role.SALES,
        Role.IMPLEMENTATION,
    }


def test_a_role_that_needs_totp_can_only_enrol_until_it_has(backend: Backend) -> None:
    admin = new_staff(backend.client, backend.services, backend.clock, Role.ADMIN, enrol=False)
    r = login(backend.client, admin.email)
    assert r.json()["second_factor"] == "enrol_required" and r.json()["amr"] == ["pwd"]
    assert backend.client.get("/staff/me", headers=admin.headers).status_code == 200
    body = assert_problem(
        backend.client.get("/staff/accounts", headers=admin.headers), 403, "forbidden"
    )
    assert "two-factor" in body["detail"]
    # An optional role works without it.
    auditor = new_staff(backend.client, backend.services, backend.clock, Role.AUDIT, enrol=False)
    assert backend.client.get("/staff/audit", headers=auditor.headers).status_code == 200


def test_an_enrolled_login_needs_a_fresh_code(backend: Backend) -> None:
    sales = new_staff(backend.client, backend.services, backend.clock, Role.SALES)
    assert sales.secret is not None
    assert_problem(login(backend.client, sales.email), 401, "totp_required")
    assert_problem(login(backend.client, sales.email, otp="000000"), 401, "invalid_credentials")
    code = code_at(sales.secret, backend.clock)
    r = login(backend.client, sales.email, otp=code)
    assert r.status_code == 200 and r.json()["amr"] == ["pwd", "otp"], r.text
    assert r.json()["second_factor"] == "done"
    # The same code again, within its 30 seconds, and the code of the step before: refused.
    assert_problem(login(backend.client, sales.email, otp=code), 401, "invalid_credentials")
    previous = code_at(sales.secret, backend.clock, -1)
    assert_problem(login(backend.client, sales.email, otp=previous), 401, "invalid_credentials")
    backend.clock.advance(30)
    assert login(backend.client, sales.email, otp=code_at(sales.secret, backend.clock)).is_success
    wrong = login(backend.client, sales.email, otp=code_at(sales.secret, backend.clock))
    assert_problem(wrong, 401, "invalid_credentials")
    actions = [e.action for e in backend.services.audit.search(obj=f"staff/{sales.id}").entries]
    assert actions.count("staff.login_failed") == 4 and actions.count("staff.login") >= 2


def test_a_recovery_code_works_once(backend: Backend) -> None:
    admin = new_staff(backend.client, backend.services, backend.clock, Role.ADMIN)
    assert len(admin.recovery_codes) == 10 and len(set(admin.recovery_codes)) == 10
    code = admin.recovery_codes[3]
    r = login(backend.client, admin.email, recovery_code=code.upper())
    assert r.status_code == 200 and r.json()["second_factor"] == "done", r.text
    assert backend.client.get("/staff/accounts", headers=bearer(r.json()["token"])).is_success
    again = login(backend.client, admin.email, recovery_code=code)
    assert_problem(again, 401, "invalid_credentials")
    assert login(backend.client, admin.email, recovery_code=admin.recovery_codes[4]).is_success


def test_refresh_rotates_and_a_reused_token_ends_the_family(backend: Backend) -> None:
    sales = new_staff(backend.client, backend.services, backend.clock, Role.SALES)
    first = backend.client.post("/staff/refresh", json={"refresh_token": sales.refresh_token})
    assert first.status_code == 200, first.text
    fresh = first.json()
    assert fresh["refresh_token"] != sales.refresh_token and fresh["amr"] == ["pwd", "otp"]
    replay = backend.client.post("/staff/refresh", json={"refresh_token": sales.refresh_token})
    assert_problem(replay, 401, "token_invalid")
    # The whole family is gone: the new refresh token and the new access token too.
    after = backend.client.post("/staff/refresh", json={"refresh_token": fresh["refresh_token"]})
    assert_problem(after, 401, "token_invalid")
    assert_problem(
        backend.client.get("/staff/me", headers=bearer(fresh["token"])), 401, "token_invalid"
    )
    revoked = backend.services.audit.search(action="staff.session_revoked").entries
    assert [e.actor for e in revoked] == [f"staff:{sales.id}"]


def test_staff_and_end_user_tokens_are_not_interchangeable(backend: Backend) -> None:
    admin = new_staff(backend.client, backend.services, backend.clock, Role.ADMIN)
    user = register(backend.client)
    assert_problem(backend.client.get("/license", headers=admin.headers), 401, "token_invalid")
    assert_problem(backend.client.get("/devices", headers=admin.headers), 401, "token_invalid")
    user_headers = bearer(user["token"])
    assert_problem(backend.client.get("/staff/me", headers=user_headers), 401, "token_invalid")
    assert_problem(
        backend.client.get("/staff/accounts", headers=user_headers), 401, "token_invalid"
    )
    # A user's refresh token is no staff refresh token either.
    r = backend.client.post("/staff/refresh", json={"refresh_token": user["refresh_token"]})
    assert_problem(r, 401, "token_invalid")
    assert_problem(backend.client.get("/staff/me"), 401, "token_invalid")


def test_an_admin_manages_staff_and_everything_is_audited(backend: Backend) -> None:
    admin = new_staff(backend.client, backend.services, backend.clock, Role.ADMIN)
    r = backend.client.post(
        "/staff/accounts",
        headers=admin.headers,
        json={
            "email": "Support@Staff.Example",
            "name": "Sam",
            "role": "support",
            "password": STAFF_PASSWORD,
        },
    )
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["email"] == "support@staff.example" and not created["totp_required"]
    again = backend.client.post(
        "/staff/accounts",
        headers=admin.headers,
        json={"email": "support@staff.example", "name": "S", "role": "audit", "password": "x" * 10},
    )
    assert_problem(again, 409, "already_exists")
    short = backend.client.post(
        "/staff/accounts",
        headers=admin.headers,
        json={"email": "a@staff.example", "name": "A", "role": "nobody", "password": "short"},
    )
    assert_problem(short, 422, "validation_error")

    support = login(backend.client, "support@staff.example").json()
    listed = backend.client.get("/staff/accounts", headers=admin.headers).json()
    assert {s["email"] for s in listed} >= {admin.email, "support@staff.example"}
    own = backend.client.post(f"/staff/accounts/{admin.id}/disable", headers=admin.headers)
    assert_problem(own, 403, "forbidden")
    off = backend.client.post(f"/staff/accounts/{created['id']}/disable", headers=admin.headers)
    assert off.status_code == 200 and off.json()["disabled"]
    assert_problem(
        backend.client.get("/staff/me", headers=bearer(support["token"])), 401, "token_invalid"
    )
    assert_problem(login(backend.client, "support@staff.example"), 403, "forbidden")

    reset = backend.client.post(f"/staff/accounts/{admin.id}/reset-2fa", headers=admin.headers)
    assert reset.status_code == 200 and not reset.json()["totp_enabled"]
    assert_problem(backend.client.get("/staff/me", headers=admin.headers), 401, "token_invalid")

    page = backend.services.audit.search(actor=f"staff:{admin.id}")
    actions = [e.action for e in page.entries]
    assert actions[:3] == ["staff.reset_2fa", "staff.disable", "staff.create"], actions
    assert page.entries[2].details == {
        "email": "support@staff.example",
        "name": "Sam",
        "role": "support",
    }


def test_audit_search_filters_and_pages(backend: Backend) -> None:
    auditor = new_staff(backend.client, backend.services, backend.clock, Role.AUDIT)
    for n in range(7):
        backend.services.audit.append("test", "thing.touch", f"things/{n % 2}/part/{n}", {"n": n})
    backend.services.audit.append("test", "thing.touch", "things/10", {"n": 10})
    seen: list[int] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"object": "things/1", "limit": 2}
        if cursor:
            params["cursor"] = cursor
        r = backend.client.get("/staff/audit", headers=auditor.headers, params=params)
        assert r.status_code == 200, r.text
        seen += [e["details"]["n"] for e in r.json()["entries"]]
        cursor = r.json()["next_cursor"]
        if cursor is None:
            break
    assert seen == [5, 3, 1]  # newest first; "things/10" is not under "things/1"
    r = backend.client.get(
        "/staff/audit", headers=auditor.headers, params={"actor": "test", "action": "thing.touch"}
    )
    assert len(r.json()["entries"]) == 8
    future = backend.clock.now().replace(year=2100).isoformat()
    r = backend.client.get("/staff/audit", headers=auditor.headers, params={"since": future})
    assert r.json()["entries"] == []
    bad = backend.client.get("/staff/audit", headers=auditor.headers, params={"cursor": "x"})
    assert_problem(bad, 422, "validation_error")
    naive = backend.client.get(
        "/staff/audit", headers=auditor.headers, params={"since": "2026-01-01T00:00:00"}
    )
    assert_problem(naive, 422, "validation_error")


def test_an_admin_rotates_a_key_and_the_rotation_is_audited(backend: Backend) -> None:
    admin = new_staff(backend.client, backend.services, backend.clock, Role.ADMIN)
    before = {k["kid"] for k in backend.client.get("/staff/keys", headers=admin.headers).json()}
    r = backend.client.post("/staff/keys/license/rotate", headers=admin.headers)
    assert r.status_code == 200 and r.json()["purpose"] == "license", r.text
    new_kid = r.json()["kid"]
    assert new_kid not in before
    keys = backend.client.get("/staff/keys", headers=admin.headers).json()
    states = {k["kid"]: k["state"] for k in keys if k["purpose"] == "license"}
    assert states[new_kid] == "active" and "retired (published)" in states.values()
    (entry,) = backend.services.audit.search(action="keys.rotate").entries
    assert (entry.actor, entry.object, entry.details["kid"]) == (
        f"staff:{admin.id}",
        "keys/license",
        new_kid,
    )
    # A checkpoint signed before the rotation still verifies (the retired key is kept).
    backend.services.audit.checkpoint()
    backend.client.post("/staff/keys/license/rotate", headers=admin.headers)
    backend.services.audit.checkpoint()
    verdict = backend.client.get("/staff/audit/verify", headers=admin.headers).json()
    assert verdict["ok"] and verdict["unanchored"] == 0, verdict


def test_wrong_codes_lock_the_second_factor_for_a_while(backend: Backend) -> None:
    admin = new_staff(backend.client, backend.services, backend.clock, Role.ADMIN)
    assert admin.secret is not None
    # Wrong passwords do not count: they would let anyone lock the account.
    for _ in range(6):
        bad = backend.client.post(
            "/staff/login", json={"email": admin.email, "password": "wrong password"}
        )
        assert_problem(bad, 401, "invalid_credentials")
    for _ in range(5):
        assert_problem(login(backend.client, admin.email, otp="123456"), 401, "invalid_credentials")
        backend.clock.advance(60)
    right = login(backend.client, admin.email, otp=code_at(admin.secret, backend.clock))
    assert_problem(right, 429, "rate_limited")
    # The first wrong code was 5 minutes ago: free again 10 minutes from now.
    assert 590 <= int(right.headers["Retry-After"]) <= 601
    backend.clock.advance(601)
    assert login(backend.client, admin.email, otp=code_at(admin.secret, backend.clock)).is_success


def test_an_export_from_beyond_any_sequence_number_is_refused_not_a_500(backend: Backend) -> None:
    # Found by the fuzz run: 2**63 overflowed the database's integer.
    auditor = new_staff(backend.client, backend.services, backend.clock, Role.AUDIT)
    r = backend.client.get(
        "/staff/audit/export", headers=auditor.headers, params={"from_seq": 2**63}
    )
    assert_problem(r, 422, "validation_error")
    ok = backend.client.get(
        "/staff/audit/export", headers=auditor.headers, params={"from_seq": 2**63 - 1}
    )
    assert ok.status_code == 200, ok.text
