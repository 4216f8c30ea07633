"""Issue → download → the agent verifies the file offline with the server's key pinned; renewal
picked up, the older version refused; revocation reaching an offline installation through the
public list. Over HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from agent.clock import FakeClock as AgentClock
from agent.errors import LicenseFileRejected, LicenseRevoked, WrongLicenseKey
from agent.licensing import LicenseFileStore, parse_armour
from agent.protocol import LICENSE_KEY_PATTERN, REVOCATION_LIST_MEDIA_TYPE
from server_stub.db import transaction
from server_stub.portal_models import Notification
from server_stub.services.staff import Role
from tests.helpers.api import assert_problem
from tests.helpers.backend import Backend
from tests.helpers.license_files import Installation, installation
from tests.helpers.portal import (
    enable_notifications,
    issue_body,
    mark_paid,
    seed_customer,
)
from tests.helpers.staff import StaffLogin, new_staff


def _site(backend: Backend, tmp_path: Path, name: str = "site") -> Installation:
    """An installation that never reached the server: only the `license` key's pin."""
    pin = backend.services.ctx.keys.signing_key("license").pin
    return installation(tmp_path / name, [pin], clock=AgentClock(backend.clock.now()))


def _issue(backend: Backend, who: StaffLogin, body: dict[str, Any]) -> dict[str, Any]:
    r = backend.client.post("/staff/licenses", headers=who.headers, json=body)
    assert r.status_code == 201, r.text
    created: dict[str, Any] = r.json()
    return created


def _download(backend: Backend, who: StaffLogin, ref: str, **params: Any) -> httpx.Response:
    return backend.client.get(f"/staff/licenses/{ref}/file", headers=who.headers, params=params)


@pytest.mark.parametrize("encrypted", [False, True])
def test_an_issued_license_verifies_offline_at_the_agent(
    backend: Backend, tmp_path: Path, encrypted: bool
) -> None:
    sales = new_staff(backend.client, backend.services, backend.clock, Role.SALES)
    customer = seed_customer(backend.services)
    lic = _issue(backend, sales, issue_body(customer, backend.clock.now(), encrypted=encrypted))
    assert re.fullmatch(LICENSE_KEY_PATTERN, lic["license_key"]) and len(lic["license_key"]) > 40
    assert lic["status"] == "active" and lic["version"] == 1 and lic["pending"] is None
    assert lic["ip_ranges"] == ["10.0.0.0/8", "2001:db8::/32"]
    assert lic["current"]["approved_by"] == f"staff:{sales.id}"

    r = _download(backend, sales, lic["id"])
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    assert f'filename="{lic["license_key"]}.v1.lic"' in r.headers["content-disposition"]
    text = r.text
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    assert r.headers["x-checksum-sha256"] == digest == lic["current"]["checksum"]

    site = _site(backend, tmp_path)
    store = LicenseFileStore(site.verifier, site.data_dir)
    if encrypted:
        assert "ai_forecast" not in text  # nothing readable without the key
        with pytest.raises(WrongLicenseKey):
            store.activate(text, "TGF-AAAA-BBBB-CCCC-DDDD")
    got = store.activate(text, lic["license_key"])
    assert got.license_key == lic["license_key"] and got.file_version == 1
    assert got.customer_name == customer.name and got.plan == "advanced"
    assert got.modules == frozenset({"ai_forecast", "multi_department"})
    assert (got.limits.users, got.limits.departments, got.limits.messages) == (50, 5, None)
    assert got.kid == lic["current"]["kid"] == backend.services.ctx.keys.signing_key("license").kid
    assert store.check().file_version == 1

    # The download is audited with the version and its checksum.
    entries = backend.services.audit.search(obj=f"license/{lic['id']}").entries
    assert [e.action for e in entries] == ["license.download", "license.issue"]
    assert entries[0].details["checksum"] == digest and entries[0].details["version"] == 1
    assert entries[1].actor == f"staff:{sales.id}"


def test_a_renewal_is_version_two_and_the_agent_keeps_the_newer(
    backend: Backend, tmp_path: Path
) -> None:
    sales = new_staff(backend.client, backend.services, backend.clock, Role.SALES)
    customer = seed_customer(backend.services)
    now = backend.clock.now()
    lic = _issue(backend, sales, issue_body(customer, now))
    v1 = _download(backend, sales, lic["id"]).text

    backend.clock.advance(300)
    r = backend.client.post(
        f"/staff/licenses/{lic['license_key']}/renew",
        headers=sales.headers,
        json={
            "valid_until": (now + timedelta(days=730)).isoformat(),
            "amount_minor": 120_000_00,
            "currency": "RUB",
            "note": "invoice 2026-117",
        },
    )
    assert r.status_code == 200, r.text
    renewed = r.json()
    assert renewed["version"] == 2 and renewed["current"]["reason"] == "renew"
    assert renewed["current"]["note"] == "invoice 2026-117"
    v2 = _download(backend, sales, lic["id"]).text
    assert v2 != v1

    history = backend.client.get(f"/staff/licenses/{lic['id']}/versions", headers=sales.headers)
    versions = history.json()["versions"]
    assert [v["version"] for v in versions] == [2, 1]
    assert versions[0]["checksum"] == hashlib.sha256(v2.encode()).hexdigest()
    assert versions[1]["checksum"] == hashlib.sha256(v1.encode()).hexdigest()
    assert versions[0]["checksum"] != versions[1]["checksum"]
    assert all(v["state"] == "signed" and v["kid"] for v in versions)
    assert versions[0]["amount_minor"] == 120_000_00 and versions[0]["currency"] == "RUB"
    # The old version stays downloadable (history), and differs.
    assert _download(backend, sales, lic["id"], version=1).text == v1
    assert_problem(_download(backend, sales, lic["id"], version=3), 404, "not_found")

    site = _site(backend, tmp_path)
    site.clock.set(backend.clock.now())
    store = LicenseFileStore(site.verifier, site.data_dir)
    assert store.activate(v1, lic["license_key"]).file_version == 1
    newer = store.activate(v2, lic["license_key"])
    assert newer.file_version == 2 and newer.valid_until > now + timedelta(days=700)
    with pytest.raises(LicenseFileRejected, match="version 2"):
        store.activate(v1, lic["license_key"])
    assert store.check().file_version == 2


def test_revocation_reaches_an_offline_installation_through_the_public_list(
    backend: Backend, tmp_path: Path
) -> None:
    admin = new_staff(backend.client, backend.services, backend.clock, Role.ADMIN)
    enable_notifications(backend.services, "smtp", "webhook")
    customer = seed_customer(backend.services)
    lic = _issue(backend, admin, issue_body(customer, backend.clock.now()))
    other = _issue(backend, admin, issue_body(customer, backend.clock.now()))
    text = _download(backend, admin, lic["id"]).text
    site = _site(backend, tmp_path)
    store = LicenseFileStore(site.verifier, site.data_dir)
    store.activate(text, lic["license_key"])
    # Offline, the key it knows is the one its file carried (pinned).
    key = parse_armour(text).carried_key

    before = backend.client.get("/licenses/revocation-list")
    assert before.status_code == 200
    assert before.headers["content-type"].startswith(REVOCATION_LIST_MEDIA_TYPE)
    assert before.headers["cache-control"] == "public, max-age=300"
    assert site.revocations.verify(before.text, key).revoked == ()

    r = backend.client.post(
        "/licenses/revoke",
        headers=admin.headers,
        json={"license_key": lic["license_key"], "reason": "contract terminated"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "revoked" and r.json()["status_reason"] == "contract terminated"

    after = backend.client.get("/licenses/revocation-list")
    claims = site.revocations.verify(after.text, key)
    assert [(e.license_key, e.file_versions) for e in claims.revoked] == [
        (lic["license_key"], None)
    ]
    assert site.revocations.offer(after.text, key)
    with pytest.raises(LicenseRevoked):
        store.check()
    # Another license of the same list is untouched.
    other_site = _site(backend, tmp_path, "other")
    other_site.revocations.offer(after.text, key)
    other_text = _download(backend, admin, other["id"]).text
    assert other_site.verifier.verify(other_text, other["license_key"]).file_version == 1

    # Revoked: files are no longer handed out; a second revoke changes nothing.
    assert_problem(_download(backend, admin, lic["id"]), 403, "license_inactive")
    again = backend.client.post(
        "/licenses/revoke",
        headers=admin.headers,
        json={"license_key": lic["license_key"], "reason": "again"},
    )
    assert again.status_code == 200 and again.json()["status_reason"] == "contract terminated"
    unknown = backend.client.post(
        "/licenses/revoke",
        headers=admin.headers,
        json={"license_key": "TGF-NONE-NONE-NONE-NONE", "reason": "x"},
    )
    assert_problem(unknown, 404, "not_found")

    actions = [e.action for e in backend.services.audit.search(obj=f"license/{lic['id']}").entries]
    assert actions.count("license.revoke") == 1
    with transaction(backend.services.ctx.read) as session:
        sent = session.scalars(select(Notification).where(Notification.kind == "revoked")).all()
        assert sorted(n.channel for n in sent) == ["smtp", "webhook"]
        assert {n.license_id for n in sent} == {lic["id"]}
        assert lic["license_key"] not in str(sent[0].payload)


def test_a_file_of_an_unpaid_contract_is_not_handed_out(backend: Backend, tmp_path: Path) -> None:
    sales = new_staff(backend.client, backend.services, backend.clock, Role.SALES)
    customer = seed_customer(backend.services, contract_amount=50_000_00)
    lic = _issue(backend, sales, issue_body(customer, backend.clock.now()))
    assert lic["status"] == "active" and lic["contract_id"] == customer.contract_id
    body = assert_problem(_download(backend, sales, lic["id"]), 403, "license_inactive")
    assert "awaiting payment" in body["detail"]
    assert customer.contract_id is not None
    mark_paid(backend.services, customer.contract_id, backend.clock.now())
    r = _download(backend, sales, lic["id"])
    assert r.status_code == 200 and r.text.startswith("-----BEGIN TGFLOW LICENSE-----")
    assert _site(backend, tmp_path).verifier.verify(r.text, lic["license_key"]).file_version == 1
