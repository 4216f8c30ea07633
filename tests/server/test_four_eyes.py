"""The four-eyes rule: what it covers waits until an Admin other than the requester approves it;
a rejection closes the request. Over HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from typing import Any

import httpx

from server_stub.services.staff import Role
from tests.helpers.api import assert_problem
from tests.helpers.backend import Backend
from tests.helpers.portal import issue_body, seed_customer
from tests.helpers.staff import StaffLogin, new_staff

RULE = {"enabled": True, "plans": ["enterprise"], "amount_thresholds": {"RUB": 1_000_000_00}}


def _set_rule(backend: Backend, admin: StaffLogin, rule: dict[str, Any]) -> httpx.Response:
    return backend.client.put("/staff/settings/four-eyes", headers=admin.headers, json=rule)


def _post(backend: Backend, who: StaffLogin, path: str, body: Any = None) -> httpx.Response:
    return backend.client.post(path, headers=who.headers, json=body)


def test_only_an_admin_reads_and_sets_the_rule_and_it_is_audited(backend: Backend) -> None:
    admin = new_staff(backend.client, backend.services, backend.clock, Role.ADMIN)
    sales = new_staff(backend.client, backend.services, backend.clock, Role.SALES)
    r = backend.client.get("/staff/settings/four-eyes", headers=admin.headers)
    assert r.json() == {"enabled": False, "plans": [], "amount_thresholds": {}}
    assert_problem(_set_rule(backend, sales, RULE), 403, "forbidden")
    for bad in (
        {"enabled": True},
        {**RULE, "plans": ["platinum"]},
        {**RULE, "amount_thresholds": {"rub": 5}},
        {**RULE, "amount_thresholds": {"RUB": -1}},
        {**RULE, "amount_thresholds": {"RUB": 10**30}},
        {**RULE, "extra": 1},
    ):
        assert_problem(_set_rule(backend, admin, bad), 422, "validation_error")
    assert _set_rule(backend, admin, RULE).json() == RULE
    assert backend.client.get("/staff/settings/four-eyes", headers=admin.headers).json() == RULE
    [entry] = backend.services.audit.search(action="settings.four_eyes").entries
    assert entry.object == "settings/four_eyes" and entry.actor == f"staff:{admin.id}"
    assert entry.details["after"] == RULE and entry.details["before"]["enabled"] is False


def test_a_covered_issue_waits_for_another_admin(backend: Backend) -> None:
    admin = new_staff(backend.client, backend.services, backend.clock, Role.ADMIN)
    second = new_staff(backend.client, backend.services, backend.clock, Role.ADMIN)
    sales = new_staff(backend.client, backend.services, backend.clock, Role.SALES)
    _set_rule(backend, admin, RULE)
    customer = seed_customer(backend.services)
    now = backend.clock.now()

    # Not covered (advanced, no amount): in force at once.
    plain = _post(backend, sales, "/staff/licenses", issue_body(customer, now))
    assert plain.json()["status"] == "active"

    r = _post(backend, sales, "/staff/licenses", issue_body(customer, now, plan="enterprise"))
    assert r.status_code == 201, r.text
    lic = r.json()
    assert lic["status"] == "pending_approval" and lic["version"] == 0
    assert lic["current"] is None and lic["pending"]["state"] == "pending"
    assert lic["pending"]["checksum"] is None
    request_id = lic["pending"]["id"]
    refused = backend.client.get(f"/staff/licenses/{lic['id']}/file", headers=sales.headers)
    assert_problem(refused, 403, "license_inactive")

    pending = backend.client.get("/staff/approvals", headers=admin.headers).json()
    assert [p["request"]["id"] for p in pending] == [request_id]
    assert pending[0]["request"]["requested_by"] == f"staff:{sales.id}"
    assert_problem(
        _post(backend, sales, f"/staff/approvals/{request_id}/approve"), 403, "forbidden"
    )

    r = _post(backend, admin, f"/staff/approvals/{request_id}/approve")
    assert r.status_code == 200, r.text
    approved = r.json()
    assert approved["status"] == "active" and approved["version"] == 1
    assert approved["current"]["approved_by"] == f"staff:{admin.id}"
    assert approved["current"]["checksum"] and approved["pending"] is None
    file = backend.client.get(f"/staff/licenses/{lic['id']}/file", headers=sales.headers)
    assert file.status_code == 200
    # Decided: a second approval finds nothing to approve.
    assert_problem(
        _post(backend, second, f"/staff/approvals/{request_id}/approve"), 404, "not_found"
    )
    assert backend.client.get("/staff/approvals", headers=admin.headers).json() == []
    actions = [e.action for e in backend.services.audit.search(obj=f"license/{lic['id']}").entries]
    assert actions[:2] == ["license.download", "license.approve"] and "license.issue" in actions


def test_an_admins_own_request_needs_a_second_admin(backend: Backend) -> None:
    admin = new_staff(backend.client, backend.services, backend.clock, Role.ADMIN)
    second = new_staff(backend.client, backend.services, backend.clock, Role.ADMIN)
    _set_rule(backend, admin, RULE)
    # Covered by the amount: the contract's amount counts when the issue names none.
    customer = seed_customer(backend.services, contract_amount=2_000_000_00, paid=True)
    lic = _post(backend, admin, "/staff/licenses", issue_body(customer, backend.clock.now()))
    assert lic.json()["status"] == "pending_approval", lic.text
    request_id = lic.json()["pending"]["id"]
    own = _post(backend, admin, f"/staff/approvals/{request_id}/approve")
    assert "other than its requester" in assert_problem(own, 403, "forbidden")["detail"]
    r = _post(backend, second, f"/staff/approvals/{request_id}/approve")
    assert r.status_code == 200 and r.json()["status"] == "active"


def test_a_covered_renewal_waits_while_the_current_version_stays_in_force(
    backend: Backend,
) -> None:
    admin = new_staff(backend.client, backend.services, backend.clock, Role.ADMIN)
    sales = new_staff(backend.client, backend.services, backend.clock, Role.SALES)
    customer = seed_customer(backend.services)
    now = backend.clock.now()
    lic = _post(backend, sales, "/staff/licenses", issue_body(customer, now)).json()
    _set_rule(backend, admin, RULE)
    renew = {
        "valid_until": (now + timedelta(days=800)).isoformat(),
        "amount_minor": 1_500_000_00,
        "currency": "RUB",
    }
    r = _post(backend, sales, f"/staff/licenses/{lic['id']}/renew", renew)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "active" and body["version"] == 1
    assert body["valid_until"] == lic["valid_until"]  # the terms in force did not move
    assert body["pending"]["version"] == 2 and body["pending"]["reason"] == "renew"
    # One pending request at a time.
    again = _post(backend, sales, f"/staff/licenses/{lic['id']}/renew", renew)
    assert_problem(again, 409, "already_exists")

    rejected = _post(
        backend,
        admin,
        f"/staff/approvals/{body['pending']['id']}/reject",
        {"reason": "the invoice is not paid"},
    )
    assert rejected.status_code == 200, rejected.text
    assert rejected.json()["status"] == "active" and rejected.json()["version"] == 1
    assert rejected.json()["pending"] is None

    # A smaller renewal is not covered by the amount: in force at once, as the next version.
    r = _post(
        backend,
        sales,
        f"/staff/licenses/{lic['id']}/renew",
        {**renew, "amount_minor": 10_000_00},
    )
    assert r.json()["version"] == 3 and r.json()["pending"] is None
    history = backend.client.get(f"/staff/licenses/{lic['id']}/versions", headers=sales.headers)
    states = [(v["version"], v["state"]) for v in history.json()["versions"]]
    assert states == [(3, "signed"), (2, "rejected"), (1, "signed")]
    assert history.json()["versions"][1]["rejection_reason"] == "the invoice is not paid"


def test_a_rejected_first_version_closes_the_license_off_the_list(backend: Backend) -> None:
    admin = new_staff(backend.client, backend.services, backend.clock, Role.ADMIN)
    sales = new_staff(backend.client, backend.services, backend.clock, Role.SALES)
    _set_rule(backend, admin, RULE)
    customer = seed_customer(backend.services)
    body = issue_body(customer, backend.clock.now(), plan="enterprise")
    lic = _post(backend, sales, "/staff/licenses", body).json()
    request_id = lic["pending"]["id"]
    assert_problem(
        _post(backend, admin, f"/staff/approvals/{request_id}/reject", {}), 422, "validation_error"
    )
    r = _post(backend, admin, f"/staff/approvals/{request_id}/reject", {"reason": "duplicate"})
    assert r.json()["status"] == "revoked" and r.json()["status_reason"] == "rejected: duplicate"
    renew = {"valid_until": (backend.clock.now() + timedelta(days=900)).isoformat()}
    refused = _post(backend, sales, f"/staff/licenses/{lic['id']}/renew", renew)
    assert_problem(refused, 403, "license_inactive")
    # Never signed, never handed out: nothing for the revocation list to name.
    listed = backend.client.get("/licenses/revocation-list").text
    payload = listed.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert claims["revoked"] == []
    [entry] = backend.services.audit.search(action="license.reject").entries
    assert entry.object == f"license/{lic['id']}" and entry.details["reason"] == "duplicate"
    assert entry.details["version"] == 1
