"""Staff license endpoints over HTTP (SQLite and PostgreSQL): bad input is 422 and never 500,
the list's filters and cursor, upgrade and change, suspend/resume/revoke, the audit entries,
the revocation list's signing, and ``tgflow-server licenses``."""

from __future__ import annotations

import base64
import json
import re
import threading
from datetime import timedelta
from typing import Any

import httpx
import pytest

from agent.protocol import LICENSE_KEY_PATTERN
from server_stub.cli_staff import cli_actor
from server_stub.db import transaction
from server_stub.portal_models import License
from server_stub.services import revocations
from server_stub.services.licensing import new_license_key
from server_stub.services.staff import Role
from tests.helpers.api import assert_problem
from tests.helpers.backend import ONLY_POSTGRES, Backend
from tests.helpers.portal import RETIRED, Customer, issue_body, seed_customer
from tests.helpers.server_cli import run_cli
from tests.helpers.staff import StaffLogin, new_staff


def _claims(jws: str) -> dict[str, Any]:
    payload = jws.split(".")[1]
    decoded: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    )
    return decoded


def _issue(backend: Backend, who: StaffLogin, customer: Customer, **changes: Any) -> httpx.Response:
    body = issue_body(customer, backend.clock.now(), **changes)
    return backend.client.post("/staff/licenses", headers=who.headers, json=body)


def test_license_keys_are_random_readable_and_valid() -> None:
    keys = {new_license_key() for _ in range(200)}
    assert len(keys) == 200
    for key in keys:
        assert re.fullmatch(LICENSE_KEY_PATTERN, key)
        groups = key.split("-")
        assert groups[0] == "TGF" and len(groups) == 9 and all(len(g) == 4 for g in groups[1:])


def test_bad_issue_input_is_422_never_500(backend: Backend) -> None:
    sales = new_staff(backend.client, backend.services, backend.clock, Role.SALES)
    customer = seed_customer(backend.services)
    archived = seed_customer(backend.services, status="archived")
    mine = seed_customer(backend.services, contract_amount=100)
    now = backend.clock.now()
    bad: list[dict[str, Any]] = [
        {"ip_ranges": ["10.0.0.0/33"]},
        {"ip_ranges": ["not-an-ip"]},
        {"ip_ranges": ["10.0.0.0/8"] * 65},
        {"min_version": "3.0", "max_version": "2.0"},
        {"min_version": "2.0", "max_version": "2"},
        {"mandatory_min_version": "3.5"},
        {"mandatory_min_version": "1.0"},
        {"min_version": "v2"},
        {"modules": ["no_such_module"]},
        {"modules": [RETIRED]},
        {"modules": ["Bad Name"]},
        {"valid_from": (now + timedelta(days=10)).isoformat(), "valid_until": now.isoformat()},
        {"valid_until": (now - timedelta(days=30)).isoformat(), "grace_days": 0},
        {"valid_until": "2026-13-01T00:00:00Z"},
        {"valid_until": "2026-01-01"},
        {"valid_until": "9999-12-31T23:59:59+00:00"},
        {"valid_from": "0001-01-01T00:00:00+00:00"},
        {"limits": {"users": 10**30}},
        {"limits": {"users": -1}},
        {"limits": {"seats": 5}},
        {"grace_days": 10**9},
        {"heartbeat_window_s": 59},
        {"max_activations": 0},
        {"activations_per_hour": 10**12},
        {"amount_minor": 10**20, "currency": "RUB"},
        {"amount_minor": 100},
        {"currency": "rub", "amount_minor": 100},
        {"plan": "platinum"},
        {"domain": "not a domain"},
        {"domain": "x" * 300},
        {"client_id": archived.client_id},
        {"note": "n" * 501},
        {"unexpected": True},
    ]
    for changes in bad:
        r = _issue(backend, sales, customer, **changes)
        assert_problem(r, 422, "validation_error")
    # What the body refers to and does not exist: 404.
    for changes in (
        {"product_id": "nope"},
        {"client_id": "no-such-client"},
        {"contract_id": mine.contract_id},
    ):
        assert_problem(_issue(backend, sales, customer, **changes), 404, "not_found")
    assert_problem(
        backend.client.post("/staff/licenses", headers=sales.headers, content=b"{not json"),
        422,
        "validation_error",
    )
    assert backend.client.get("/staff/licenses", headers=sales.headers).json()["licenses"] == []


def test_upgrade_and_change_are_new_versions_and_refuse_nonsense(backend: Backend) -> None:
    sales = new_staff(backend.client, backend.services, backend.clock, Role.SALES)
    customer = seed_customer(backend.services)
    lic = _issue(backend, sales, customer).json()
    base = f"/staff/licenses/{lic['id']}"

    def post(action: str, body: Any) -> httpx.Response:
        return backend.client.post(f"{base}/{action}", headers=sales.headers, json=body)

    up = post("upgrade", {"plan": "enterprise", "modules": ["ai_forecast", "sso"]})
    assert up.status_code == 200, up.text
    assert up.json()["version"] == 2 and up.json()["plan"] == "enterprise"
    assert up.json()["modules"] == ["ai_forecast", "sso"]
    assert up.json()["limits"]["users"] == 50  # absent: unchanged
    assert_problem(post("upgrade", {}), 422, "validation_error")  # nothing changes
    assert_problem(post("upgrade", {"modules": [RETIRED]}), 422, "validation_error")
    assert_problem(post("upgrade", {"plan": None}), 422, "validation_error")

    ch = post("change", {"domain": "*.Example.ORG", "max_version": None, "ip_ranges": []})
    assert ch.status_code == 200, ch.text
    changed = ch.json()
    assert changed["version"] == 3 and changed["domain"] == "*.example.org"
    assert changed["max_version"] is None and changed["ip_ranges"] == []
    assert changed["current"]["terms"]["domain"] == "*.example.org"
    assert_problem(post("change", {"domain": None}), 422, "validation_error")
    assert_problem(post("change", {"min_version": "9.0"}), 422, "validation_error")
    assert_problem(post("change", {"heartbeat_window_s": 30}), 422, "validation_error")
    assert_problem(post("change", {"valid_until": "2030-01-01T00:00:00Z"}), 422, "validation_error")
    early = (backend.clock.now() + timedelta(days=10)).isoformat()
    assert_problem(post("renew", {"valid_until": early}), 422, "validation_error")
    assert_problem(post("renew", {}), 422, "validation_error")

    entries = backend.services.audit.search(obj=f"license/{lic['id']}").entries
    assert [e.action for e in entries] == ["license.change", "license.upgrade", "license.issue"]
    assert entries[0].details["changed"] == ["domain", "ip_ranges", "max_version"]
    assert entries[0].details["version"] == 3 and len(entries[0].details["checksum"]) == 64
    missing = backend.client.post(
        "/staff/licenses/no-such-license/upgrade", headers=sales.headers, json={"plan": "basic"}
    )
    assert_problem(missing, 404, "not_found")


def test_suspend_resume_revoke(backend: Backend) -> None:
    admin = new_staff(backend.client, backend.services, backend.clock, Role.ADMIN)
    customer = seed_customer(backend.services)
    lic = _issue(backend, admin, customer).json()
    base = f"/staff/licenses/{lic['id']}"

    def post(action: str, body: Any = None) -> httpx.Response:
        return backend.client.post(f"{base}/{action}", headers=admin.headers, json=body)

    assert_problem(post("suspend", {}), 422, "validation_error")
    assert_problem(post("resume", {"reason": "x"}), 403, "license_inactive")
    r = post("suspend", {"reason": "unpaid invoice"})
    assert r.json()["status"] == "suspended" and r.json()["suspended_at"]
    assert_problem(post("suspend", {"reason": "again"}), 403, "license_inactive")
    refused = backend.client.get(f"{base}/file", headers=admin.headers)
    assert_problem(refused, 403, "license_inactive")
    r = post("resume", {"reason": "paid"})
    assert r.json()["status"] == "active" and r.json()["suspended_at"] is None
    assert backend.client.get(f"{base}/file", headers=admin.headers).status_code == 200
    r = post("revoke", {"reason": "fraud"})
    assert r.json()["status"] == "revoked" and r.json()["revoked_at"]
    assert_problem(post("resume", {"reason": "x"}), 403, "license_inactive")
    assert_problem(post("suspend", {"reason": "x"}), 403, "license_inactive")
    assert_problem(post("upgrade", {"plan": "basic"}), 403, "license_inactive")

    entries = backend.services.audit.search(obj=f"license/{lic['id']}").entries
    actions = [e.action for e in entries]
    assert actions[:4] == [
        "license.revoke",
        "license.download",
        "license.resume",
        "license.suspend",
    ]
    assert entries[0].details["status"] == "revoked" and entries[0].details["reason"] == "fraud"
    assert entries[0].details["version"] == 1 and entries[0].details["checksum"]


def test_the_list_filters_and_pages_with_an_opaque_cursor(backend: Backend) -> None:
    sales = new_staff(backend.client, backend.services, backend.clock, Role.SALES)
    support = new_staff(backend.client, backend.services, backend.clock, Role.SUPPORT)
    one = seed_customer(backend.services)
    two = seed_customer(backend.services, name="АО Василёк")
    now = backend.clock.now()
    ids = []
    for i in range(7):
        backend.clock.advance(1)
        customer = one if i % 2 == 0 else two
        plan = "enterprise" if i == 3 else "basic"
        modules = ["ai_forecast", "sso"] if i in (1, 5) else ["ai_forecast"]
        until = (now + timedelta(days=30 * (i + 1))).isoformat()
        r = _issue(backend, sales, customer, plan=plan, modules=modules, valid_until=until)
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])

    def page(**params: Any) -> httpx.Response:
        return backend.client.get("/staff/licenses", headers=support.headers, params=params)

    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        body = page(**params).json()
        seen += [lic["id"] for lic in body["licenses"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == ids[::-1]  # newest first, each once
    assert {lic["id"] for lic in page(client_id=two.client_id).json()["licenses"]} == {
        ids[1],
        ids[3],
        ids[5],
    }
    assert [lic["id"] for lic in page(plan="enterprise").json()["licenses"]] == [ids[3]]
    assert [lic["id"] for lic in page(module="sso").json()["licenses"]] == [ids[5], ids[1]]
    assert page(module="ai_forecas").json()["licenses"] == []
    assert page(module="ai_forecast").json()["licenses"].__len__() == 7
    before = (now + timedelta(days=95)).isoformat()
    after = (now + timedelta(days=45)).isoformat()
    window = page(expiring_before=before, expiring_after=after).json()["licenses"]
    assert [lic["id"] for lic in window] == [ids[2], ids[1]]
    assert page(status="active", product_id="tgflow").json()["licenses"].__len__() == 7
    assert page(status="revoked").json()["licenses"] == []
    real = page(limit=3).json()["next_cursor"]
    assert len(page(limit=3, cursor=real).json()["licenses"]) == 3
    for bad in (
        {"cursor": "garbage!"},
        {"cursor": "1." + "g" * 36},
        {"cursor": "9" * 17 + ".00000000-0000-0000-0000-000000000000"},
        {"cursor": f"{real}x"},
        {"cursor": real.upper()},
        {"status": "zombie"},
        {"limit": 0},
        {"limit": 10**6},
        {"expiring_before": "yesterday"},
        {"module": "Bad Module"},
    ):
        assert_problem(page(**bad), 422, "validation_error")

    one_license = backend.client.get(f"/staff/licenses/{ids[0]}", headers=support.headers).json()
    assert one_license["client_name"] == "ООО Ромашка" and one_license["current"]["version"] == 1
    by_key = backend.client.get(
        f"/staff/licenses/{one_license['license_key']}", headers=support.headers
    )
    assert by_key.json()["id"] == ids[0]
    missing = backend.client.get("/staff/licenses/nope", headers=support.headers)
    assert_problem(missing, 404, "not_found")


def test_roles_the_lifecycle_refuses(backend: Backend) -> None:
    sales = new_staff(backend.client, backend.services, backend.clock, Role.SALES)
    support = new_staff(backend.client, backend.services, backend.clock, Role.SUPPORT)
    auditor = new_staff(backend.client, backend.services, backend.clock, Role.AUDIT)
    customer = seed_customer(backend.services)
    lic = _issue(backend, sales, customer).json()
    reason = {"reason": "x"}
    for who, method, path, body in (
        (support, "POST", "/staff/licenses", issue_body(customer, backend.clock.now())),
        (sales, "POST", f"/staff/licenses/{lic['id']}/revoke", reason),
        (sales, "POST", f"/staff/licenses/{lic['id']}/suspend", reason),
        (sales, "GET", "/staff/approvals", None),
        (sales, "GET", "/staff/settings/four-eyes", None),
        (auditor, "GET", "/staff/licenses", None),
        (auditor, "GET", f"/staff/licenses/{lic['id']}/file", None),
        (sales, "POST", "/licenses/revoke", {"license_key": lic["license_key"], "reason": "x"}),
    ):
        r = backend.client.request(method, path, headers=who.headers, json=body)
        assert_problem(r, 403, "forbidden")
    assert_problem(backend.client.get("/staff/licenses"), 401, "token_invalid")
    # The revocation list needs no token.
    assert backend.client.get("/licenses/revocation-list").status_code == 200


def test_the_revocation_list_is_ordered_and_resigned_lazily(backend: Backend) -> None:
    services = backend.services
    admin = new_staff(backend.client, services, backend.clock, Role.ADMIN)
    customer = seed_customer(services)
    a = _issue(backend, admin, customer).json()
    b = _issue(backend, admin, customer).json()
    issuer = services.ctx.settings.issuer
    now = backend.clock.now()
    with transaction(services.ctx.write) as session:
        first = revocations.current(session, services.signer, issuer=issuer, now=now)
    # Two revocations within one second: each list is later than the one before, so an
    # installation that saw the first still takes the second.
    services.licensing.revoke("test", a["id"], "one")
    services.licensing.revoke("test", b["id"], "two")
    served = backend.client.get("/licenses/revocation-list").text
    assert _claims(served)["iat"] >= _claims(first)["iat"] + 2
    assert [r["license_key"] for r in _claims(served)["revoked"]] == sorted(
        [a["license_key"], b["license_key"]]
    )
    lifetime = int(revocations.LIST_LIFETIME.total_seconds())
    assert _claims(served)["next_update"] - _claims(served)["iat"] == lifetime
    # Served as kept until half its life is gone, then re-signed on the next read.
    backend.clock.advance(lifetime // 2 - 60)
    assert backend.client.get("/licenses/revocation-list").text == served
    backend.clock.advance(120)
    fresh = backend.client.get("/licenses/revocation-list").text
    assert fresh != served and _claims(fresh)["iat"] > _claims(served)["iat"]
    assert _claims(fresh)["revoked"] == _claims(served)["revoked"]
    with transaction(services.ctx.read) as session:
        statuses = {lic.status for lic in session.query(License)}
    assert statuses == {"revoked"}


def _cli(backend: Backend, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    return run_cli(backend, capsys, "licenses", *argv)


def test_the_cli_lists_shows_writes_and_revokes_audited(
    cli_env: Backend, capsys: pytest.CaptureFixture[str], tmp_path: Any
) -> None:
    backend = cli_env
    sales = new_staff(backend.client, backend.services, backend.clock, Role.SALES)
    customer = seed_customer(backend.services)
    lic = _issue(backend, sales, customer).json()
    key = lic["license_key"]

    code, out = _cli(backend, capsys, "list")
    assert code == 0 and key in out and "active" in out
    code, out = _cli(backend, capsys, "show", key)
    assert code == 0 and lic["current"]["checksum"] in out and "ООО Ромашка" in out
    target = tmp_path / "license.lic"
    code, out = _cli(backend, capsys, "file", key, "--version", "1", "--output", str(target))
    assert code == 0 and lic["current"]["checksum"] in out
    assert target.read_text(encoding="utf-8").startswith("-----BEGIN TGFLOW LICENSE-----")
    code, out = _cli(backend, capsys, "file", key, "--version", "7")
    assert code == 2 and "no signed file" in out
    code, out = _cli(backend, capsys, "revoke", key)
    assert code == 2 and "--reason" in out
    code, out = _cli(backend, capsys, "revoke", key, "--reason", "customer left")
    assert code == 0 and "revoked" in out
    code, out = _cli(backend, capsys, "show", "TGF-NONE-NONE-NONE-NONE")
    assert code == 2 and "no such license" in out

    entries = backend.services.audit.search(obj=f"license/{lic['id']}").entries
    assert [(e.action, e.actor) for e in entries[:2]] == [
        ("license.revoke", cli_actor()),
        ("license.download", cli_actor()),
    ]
    r = backend.client.get(f"/staff/licenses/{lic['id']}", headers=sales.headers)
    assert r.json()["status"] == "revoked" and r.json()["status_reason"] == "customer left"


@ONLY_POSTGRES
def test_concurrent_revocations_all_reach_the_list(backend: Backend) -> None:
    """Each revocation re-signs the list; signed concurrently, none may drop another's license
    (the list is computed after its row is locked, so the later signer sees the earlier)."""
    services = backend.services
    admin = new_staff(backend.client, services, backend.clock, Role.ADMIN)
    customer = seed_customer(services)
    keys = [_issue(backend, admin, customer).json()["license_key"] for _ in range(8)]
    start = threading.Barrier(len(keys))

    def revoke(key: str) -> None:
        start.wait()
        services.licensing.revoke("test", key, "bulk")

    threads = [threading.Thread(target=revoke, args=(key,)) for key in keys]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    served = _claims(backend.client.get("/licenses/revocation-list").text)
    assert [r["license_key"] for r in served["revoked"]] == sorted(keys)
