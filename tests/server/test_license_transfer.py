"""Licenses in and out as CSV and XLSX, over HTTP on SQLite and PostgreSQL: an export edited and
imported issues licenses with the same terms; every bad row is named with its number and column
and nothing is imported (no license, no audit entry); four-eyes rows wait for an Admin; bad
files are 422, never 500."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from server_stub.db import transaction
from server_stub.models import AuditEntry
from server_stub.portal_models import Client, Contract, License
from server_stub.services.licensing import FourEyesRule
from server_stub.services.licensing.transfer import COLUMNS, EDITABLE, MAX_ROWS, REQUIRED
from server_stub.services.staff import Role
from server_stub.services.tabular import MAX_IMPORT_BYTES
from tests.helpers.api import assert_problem
from tests.helpers.backend import Backend
from tests.helpers.portal import PRODUCT, RETIRED, Customer, issue_body, seed_customer
from tests.helpers.staff import StaffLogin, new_staff
from tests.helpers.tabular import CSV_TYPE, XLSX_TYPE, post_file, read_file, table_file

IMPORT = "/staff/imports/licenses"
EXPORT = "/staff/licenses/export"
#: The terms a license's GET shows that an import must reproduce.
TERMS = ("product_id", "plan", "modules", "limits", "valid_from", "valid_until", "grace_days",
         "domain", "min_version", "max_version", "mandatory_min_version", "encrypted",
         "max_activations", "activations_per_hour", "checkouts_per_hour", "ip_ranges",
         "heartbeat_window_s", "client_id", "contract_id")  # fmt: skip


@pytest.fixture
def sales(backend: Backend) -> StaffLogin:
    return new_staff(backend.client, backend.services, backend.clock, Role.SALES)


def _counts(backend: Backend) -> tuple[int, int]:
    """How many licenses and audit entries there are."""
    with transaction(backend.services.ctx.read) as session:
        licenses = session.scalar(select(func.count()).select_from(License))
        entries = session.scalar(select(func.count()).select_from(AuditEntry))
    return licenses or 0, entries or 0


def _inn(backend: Backend, customer: Customer) -> str:
    with transaction(backend.services.ctx.read) as session:
        client = session.get(Client, customer.client_id)
        assert client is not None
        return client.inn


def _contract_number(backend: Backend, customer: Customer) -> str:
    with transaction(backend.services.ctx.read) as session:
        contract = session.get(Contract, customer.contract_id)
        assert contract is not None
        return contract.number


def _row(backend: Backend, customer: Customer, **cells: Any) -> dict[str, Any]:
    """A good import row for ``customer`` (``cells`` override columns)."""
    now = backend.clock.now()
    row: dict[str, Any] = {
        "client_inn": _inn(backend, customer),
        "contract_number": _contract_number(backend, customer) if customer.contract_id else "",
        "product": PRODUCT,
        "plan": "advanced",
        "modules": "ai_forecast; multi_department",
        "users": 50,
        "valid_from": (now - timedelta(days=1)).date().isoformat(),
        "valid_until": (now + timedelta(days=365)).isoformat(),
        "grace_days": 7,
        "domain": "CRM.Example.com",
        "min_version": "2.0",
        "max_version": "3.0",
        "encrypted": "no",
        "ip_ranges": "10.0.0.0/8 192.168.1.0/24",
    }
    row.update(cells)
    return row


def _file(fmt: str, rows: list[dict[str, Any]]) -> bytes:
    header = list(EDITABLE)
    return table_file(fmt, [[row.get(c, "") for c in header] for row in rows], header)


def _license(backend: Backend, who: StaffLogin, license_id: str) -> dict[str, Any]:
    r = backend.client.get(f"/staff/licenses/{license_id}", headers=who.headers)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_an_export_edited_and_imported_issues_the_same_terms(
    backend: Backend, sales: StaffLogin, fmt: str
) -> None:
    http = backend.client
    customer = seed_customer(backend.services, contract_amount=100_000)
    other = seed_customer(backend.services, name="АО Другой")
    now = backend.clock.now()
    originals = []
    for body in (
        issue_body(customer, now, encrypted=True, heartbeat_window_s=3600),
        issue_body(customer, now, plan="basic", modules=[], limits={}, ip_ranges=[]),
    ):
        r = http.post("/staff/licenses", headers=sales.headers, json=body)
        assert r.status_code == 201, r.text
        originals.append(r.json())
        backend.clock.advance(1)  # the export is newest first
    http.post("/staff/licenses", headers=sales.headers, json=issue_body(other, now))

    r = http.get(
        EXPORT, headers=sales.headers, params={"format": fmt, "client_id": customer.client_id}
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith(CSV_TYPE if fmt == "csv" else XLSX_TYPE)
    assert f'filename="licenses.{fmt}"' in r.headers["content-disposition"]
    rows = read_file(fmt, r.content)
    assert [row["id"] for row in rows] == [o["id"] for o in reversed(originals)]
    assert set(rows[0]) == set(COLUMNS)
    for row, original in zip(rows, reversed(originals), strict=True):
        assert row["key_last4"] == original["license_key"][-4:]
        assert row["status"] == "active" and row["version"] == "1"
    text = r.content.decode("utf-8-sig") if fmt == "csv" else ""
    assert all(o["license_key"] not in text for o in originals)
    exported = backend.services.audit.search(action="licenses.export").entries
    assert exported[0].details == {
        "format": fmt,
        "filters": {"client_id": customer.client_id},
        "rows": 2,
    }

    rows[0]["domain"] = "other.example.com"  # the edit
    r = post_file(
        http,
        sales.headers,
        IMPORT,
        table_file(fmt, [list(x.values()) for x in rows], list(rows[0])),
        fmt,
    )
    assert r.status_code == 201, r.text
    reply = r.json()
    assert reply["imported"] == 2 and reply["pending_approval"] == 0
    assert [x["row"] for x in reply["licenses"]] == [2, 3]
    assert "license_key" not in r.text
    for item, original in zip(reply["licenses"], reversed(originals), strict=True):
        new = _license(backend, sales, item["id"])
        assert new["id"] != original["id"] and new["license_key"] != original["license_key"]
        assert new["status"] == item["status"] == "active" and new["version"] == 1
        expected = {k: original[k] for k in TERMS}
        if item["row"] == 2:
            expected["domain"] = "other.example.com"
        assert {k: new[k] for k in TERMS} == expected
    issued = backend.services.audit.search(action="license.issue").entries
    assert len(issued) == 5
    summary = backend.services.audit.search(action="licenses.import").entries
    assert [e.details for e in summary] == [
        {"format": fmt, "rows": 2, "created": 2, "pending_approval": 0}
    ]


def test_the_export_honours_the_lists_filters(backend: Backend, sales: StaffLogin) -> None:
    http = backend.client
    customer = seed_customer(backend.services)
    now = backend.clock.now()
    for plan in ("basic", "enterprise"):
        body = issue_body(customer, now, plan=plan)
        assert http.post("/staff/licenses", headers=sales.headers, json=body).status_code == 201
        backend.clock.advance(1)
    for params, plans in (
        ({"plan": "basic"}, ["basic"]),
        ({"plan": "enterprise", "status": "active"}, ["enterprise"]),
        ({"status": "revoked"}, []),
        ({"module": "sso"}, []),
        ({"expiring_before": (now + timedelta(days=400)).isoformat()}, ["enterprise", "basic"]),
    ):
        r = http.get(EXPORT, headers=sales.headers, params={**params, "format": "csv"})
        assert r.status_code == 200, r.text
        assert [row["plan"] for row in read_file("csv", r.content)] == plans, params
        listed = http.get("/staff/licenses", headers=sales.headers, params=params).json()
        assert [lic["plan"] for lic in listed["licenses"]] == plans
    for bad in ({"format": "pdf"}, {"plan": "gold"}, {"expiring_before": "soon"}):
        assert_problem(http.get(EXPORT, headers=sales.headers, params=bad), 422, "validation_error")


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_every_bad_row_is_named_and_nothing_is_imported(
    backend: Backend, sales: StaffLogin, fmt: str
) -> None:
    customer = seed_customer(backend.services, contract_amount=100)
    stranger = seed_customer(backend.services, name="ООО Чужой", contract_amount=100)
    archived = seed_customer(backend.services, status="archived")
    now = backend.clock.now()
    good = _row(backend, customer)
    rows = [
        good,
        _row(backend, customer, client_inn="7707083893"),
        _row(backend, customer, contract_number=_contract_number(backend, stranger)),
        _row(backend, customer, contract_number="NO-SUCH"),
        _row(backend, customer, product="nothing"),
        _row(backend, customer, modules=f"sso {RETIRED}"),
        _row(backend, customer, modules="no_such"),
        _row(backend, customer, valid_until="next year"),
        _row(backend, customer, valid_from=(now + timedelta(days=400)).isoformat()),
        _row(backend, customer, min_version="3.0", max_version="2.0"),
        _row(backend, customer, ip_ranges="10.0.0.0/33"),
        _row(backend, customer, users=-1),
        _row(backend, customer, grace_days="1.5"),
        _row(backend, customer, encrypted="maybe"),
        _row(backend, customer, plan="gold"),
        _row(backend, customer, domain='=HYPERLINK("http://x")'),
        _row(backend, customer, modules="@SUM(1)"),
        _row(backend, customer, heartbeat_window_s=59),
        _row(backend, archived),
        dict(good),
        _row(backend, customer, domain="", min_version=""),
    ]
    before = _counts(backend)
    r = post_file(backend.client, sales.headers, IMPORT, _file(fmt, rows), fmt)
    problem = assert_problem(r, 422, "validation_error")
    assert "nothing was imported" in problem["detail"]
    named = {tuple(e["loc"][1:]) for e in problem["errors"]}
    assert named == {
        (3, "client_inn"),
        (4, "contract_number"),
        (5, "contract_number"),
        (6, "product"),
        (7, "modules"),
        (8, "modules"),
        (9, "valid_until"),
        (10, "valid_until"),
        (11, "max_version"),
        (12, "ip_ranges"),
        (13, "users"),
        (14, "grace_days"),
        (15, "encrypted"),
        (16, "plan"),
        (17, "domain"),
        (18, "modules"),
        (19, "heartbeat_window_s"),
        (20, "client_inn"),
        (21,),
        (22, "domain"),
        (22, "min_version"),
    }
    assert _counts(backend) == before
    # The same file without its bad rows goes in whole.
    r = post_file(backend.client, sales.headers, IMPORT, _file(fmt, [good]), fmt)
    assert r.status_code == 201, r.text
    lic = _license(backend, sales, r.json()["licenses"][0]["id"])
    assert lic["domain"] == "crm.example.com" and lic["modules"] == [
        "ai_forecast",
        "multi_department",
    ]
    assert lic["ip_ranges"] == ["10.0.0.0/8", "192.168.1.0/24"] and lic["limits"]["users"] == 50
    assert lic["contract_id"] == customer.contract_id and lic["encrypted"] is False


def test_rows_the_four_eyes_rule_covers_wait_for_an_admin(
    backend: Backend, sales: StaffLogin
) -> None:
    backend.services.licensing.four_eyes.set(
        "test", FourEyesRule(enabled=True, plans=("enterprise",))
    )
    customer = seed_customer(backend.services)
    rows = [_row(backend, customer), _row(backend, customer, plan="enterprise")]
    r = post_file(backend.client, sales.headers, IMPORT, _file("csv", rows), "csv")
    assert r.status_code == 201, r.text
    reply = r.json()
    assert reply["imported"] == 2 and reply["pending_approval"] == 1
    by_row = {x["row"]: x for x in reply["licenses"]}
    assert by_row[2]["pending_approval"] is False and by_row[2]["status"] == "active"
    assert by_row[3]["pending_approval"] is True and by_row[3]["status"] == "pending_approval"
    admin = new_staff(backend.client, backend.services, backend.clock, Role.ADMIN)
    waiting = backend.client.get("/staff/approvals", headers=admin.headers).json()
    assert [w["license_id"] for w in waiting] == [by_row[3]["id"]]
    file = backend.client.get(f"/staff/licenses/{by_row[3]['id']}/file", headers=sales.headers)
    assert_problem(file, 403, "license_inactive")
    entries = backend.services.audit.search(action="license.issue").entries
    assert sorted(e.details["pending_approval"] for e in entries) == [False, True]


def test_roles_without_the_permission_are_refused(backend: Backend) -> None:
    customer = seed_customer(backend.services)
    support = new_staff(backend.client, backend.services, backend.clock, Role.SUPPORT)
    audit = new_staff(backend.client, backend.services, backend.clock, Role.AUDIT)
    data = _file("csv", [_row(backend, customer)])
    before = _counts(backend)
    for who in (support, audit):
        assert_problem(
            post_file(backend.client, who.headers, IMPORT, data, "csv"), 403, "forbidden"
        )
    assert _counts(backend) == before
    assert backend.client.get(EXPORT, headers=support.headers).status_code == 200
    assert_problem(backend.client.get(EXPORT, headers=audit.headers), 403, "forbidden")
    assert backend.client.get(EXPORT).status_code == 401


def test_a_file_that_cannot_be_read_is_refused(backend: Backend, sales: StaffLogin) -> None:
    customer = seed_customer(backend.services)
    good = _file("csv", [_row(backend, customer)])
    header_only = table_file("csv", [], list(EDITABLE))
    missing = table_file("csv", [["x"]], ["client_inn"])
    too_many = table_file("csv", [["1"] * len(REQUIRED)] * (MAX_ROWS + 1), REQUIRED)
    before = _counts(backend)
    for data, content_type in (
        (b"\xff\xfe\x00garbage\x00", CSV_TYPE),
        (b"PK\x03\x04 not really a zip", XLSX_TYPE),
        (good, XLSX_TYPE),
        (good, "application/json"),
        (good, "text/plain"),
        (b"", CSV_TYPE),
        (header_only, CSV_TYPE),
        (missing, CSV_TYPE),
        (too_many, CSV_TYPE),
    ):
        r = backend.client.post(
            IMPORT, headers={**sales.headers, "Content-Type": content_type}, content=data
        )
        assert_problem(r, 422, "validation_error")
    assert _counts(backend) == before


def test_an_upload_above_the_cap_is_413(backend: Backend, sales: StaffLogin) -> None:
    data = b"client_inn\r\n" + b"1" * MAX_IMPORT_BYTES
    r = backend.client.post(
        IMPORT, headers={**sales.headers, "Content-Type": CSV_TYPE}, content=data
    )
    assert_problem(r, 413, "payload_too_large")
