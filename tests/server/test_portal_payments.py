"""``/staff/payments`` over HTTP on SQLite and PostgreSQL: the list with filters and cursors, the
CSV/XLSX export, and the bank-statement import (all rows valid, or nothing imported)."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import httpx
from openpyxl import Workbook, load_workbook
from sqlalchemy import select

from server_stub.db import transaction
from server_stub.models import AuditEntry
from server_stub.services.integrations.payment_import import COLUMNS
from server_stub.services.staff import Role, staff_actor
from server_stub.services.tabular import MAX_IMPORT_BYTES
from tests.helpers.api import assert_problem
from tests.helpers.backend import Backend
from tests.helpers.external import (
    contract_state,
    payment_body,
    payments_of,
    record_payment,
    seed_client,
    seed_contract,
    seed_license,
)
from tests.helpers.staff import StaffLogin, new_staff

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def record(backend: Backend, contract_number: str, amount: int, **overrides: Any) -> None:
    record_payment(backend.services, payment_body(contract_number, amount, **overrides))


def csv_bytes(rows: list[list[Any]], header: tuple[str, ...] = COLUMNS) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().encode("utf-8")


def xlsx_bytes(rows: list[list[Any]], header: tuple[str, ...] = COLUMNS) -> bytes:
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(list(header))
    for row in rows:
        sheet.append(row)
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def upload(backend: Backend, who: StaffLogin, data: bytes, query: str = "") -> httpx.Response:
    return backend.client.post(
        "/staff/payments/import" + query,
        content=data,
        headers={**who.headers, "Content-Type": "application/octet-stream"},
    )


def audit_actions(backend: Backend, actor: str) -> list[str]:
    with transaction(backend.services.ctx.read) as session:
        return list(
            session.scalars(
                select(AuditEntry.action).where(AuditEntry.actor == actor).order_by(AuditEntry.seq)
            )
        )


# --- list ---------------------------------------------------------------------------------------


def test_payments_are_listed_newest_first_with_filters_and_cursors(backend: Backend) -> None:
    services = backend.services
    client_a, client_b = seed_client(services), seed_client(services)
    contract_a = seed_contract(services, client_a, 10**9)
    contract_b = seed_contract(services, client_b, 10**9)
    for day in range(1, 8):
        record(backend, contract_a.number, 100 + day, paid_at=f"2026-01-0{day}T10:00:00Z")
    # Two at the same instant: the cursor orders them by id.
    record(backend, contract_b.number, 5, paid_at="2026-01-03T10:00:00Z", source="bank")
    record(backend, contract_b.number, 6, paid_at="2026-01-03T10:00:00Z", source="bank")
    audit = new_staff(backend.client, services, backend.clock, Role.AUDIT)

    def get(query: str) -> Any:
        r = backend.client.get("/staff/payments" + query, headers=audit.headers)
        assert r.status_code == 200, r.text
        return r.json()

    seen: list[dict[str, Any]] = []
    cursor = ""
    while True:
        page = get(f"?limit=2{cursor}")
        assert len(page["payments"]) <= 2
        seen += page["payments"]
        if page["next_cursor"] is None:
            break
        cursor = "&cursor=" + page["next_cursor"]
    assert len(seen) == 9 and len({p["id"] for p in seen}) == 9
    assert [p["paid_at"] for p in seen] == sorted((p["paid_at"] for p in seen), reverse=True)
    assert seen[0]["amount_minor"] == 107 and seen[0]["contract_number"] == contract_a.number
    assert seen[0]["client_id"] == client_a

    assert {p["amount_minor"] for p in get(f"?client_id={client_b}")["payments"]} == {5, 6}
    assert len(get(f"?contract_id={contract_a.id}")["payments"]) == 7
    assert len(get("?source=bank")["payments"]) == 2
    window = get("?since=2026-01-03T10:00:00Z&until=2026-01-05T10:00:00Z")["payments"]
    assert sorted(p["amount_minor"] for p in window) == [5, 6, 103, 104]
    assert get("?source=none")["payments"] == []


def test_bad_list_queries_are_422(backend: Backend) -> None:
    audit = new_staff(backend.client, backend.services, backend.clock, Role.AUDIT)
    for query in (
        "?cursor=garbage",
        "?cursor=" + "A" * 201,
        "?cursor=1234567890.123",
        "?cursor=" + "9" * 18 + ".00000000-0000-0000-0000-000000000000",
        "?cursor=-1.00000000-0000-0000-0000-000000000000",
        "?cursor=1.00000000-0000-0000-0000-00000000000G",
        "?cursor=%00%ff",
        "?limit=0",
        "?limit=201",
        "?limit=x",
        "?since=yesterday",
        "?until=2026-01-01",
        "?source=bad%20source",
        "?client_id=" + "x" * 37,
    ):
        r = backend.client.get("/staff/payments" + query, headers=audit.headers)
        assert_problem(r, 422, "validation_error")


# --- export -------------------------------------------------------------------------------------


def test_payments_export_as_csv_and_xlsx(backend: Backend) -> None:
    services = backend.services
    contract = seed_contract(services, seed_client(services), 10**9)
    record(backend, contract.number, 1500, external_id="=HYPERLINK(1)")
    record(backend, contract.number, 2500, source="bank", external_id="п/п 17")
    sales = new_staff(backend.client, services, backend.clock, Role.SALES)

    r = backend.client.get("/staff/payments/export", headers=sales.headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert {row["external_id"] for row in rows} == {"'=HYPERLINK(1)", "п/п 17"}
    assert {row["amount_minor"] for row in rows} == {"1500", "2500"}
    assert {row["contract_number"] for row in rows} == {contract.number}

    r = backend.client.get("/staff/payments/export?format=xlsx&source=bank", headers=sales.headers)
    assert r.status_code == 200 and r.headers["content-type"] == XLSX
    sheet = load_workbook(io.BytesIO(r.content), read_only=True).worksheets[0]
    values = [list(row) for row in sheet.iter_rows(values_only=True)]
    assert values[0][:3] == ["id", "source", "external_id"]
    assert len(values) == 2 and values[1][1:3] == ["bank", "п/п 17"] and values[1][6] == 2500
    assert audit_actions(backend, staff_actor(sales.id))[-2:] == ["payments.export"] * 2
    r = backend.client.get("/staff/payments/export?format=pdf", headers=sales.headers)
    assert_problem(r, 422, "validation_error")


# --- import -------------------------------------------------------------------------------------


def test_a_statement_imports_and_pays_contracts_like_the_api(backend: Backend) -> None:
    services = backend.services
    client_id = seed_client(services)
    contract = seed_contract(services, client_id, 100_000)
    other = seed_contract(services, client_id, 100_000, "USD")
    license_ = seed_license(services, client_id, contract_id=contract.id)
    record(backend, contract.number, 20_000, source="bank", external_id="A-1")
    sales = new_staff(backend.client, services, backend.clock, Role.SALES)
    statement = [
        # Already recorded through the API with the same details: skipped.
        ["bank", "A-1", contract.number, 20_000, "RUB", "2026-01-15T06:30:00Z"],
        ["bank", "A-2", contract.number, 50_000, "rub", "2026-01-14"],
        ["bank", "A-3", contract.number, 30_000, "RUB", "2026-01-14T12:00:00+03:00"],
        ["bank", "B-1", other.number, 10, "USD", "2026-01-13T00:00:00Z"],
    ]
    r = upload(backend, sales, csv_bytes(statement))
    assert r.status_code == 200, r.text
    assert r.json() == {
        "rows": 4,
        "imported": 3,
        "already_recorded": 1,
        "contracts_paid": [contract.number],
    }
    state = contract_state(services, contract.id)
    assert state.status == "paid" and state.paid_at is not None
    assert contract_state(services, other.id).status == "signed"
    assert sum(p.amount_minor for p in payments_of(services, contract.id)) == 100_000
    actions = audit_actions(backend, staff_actor(sales.id))
    assert actions.count("payment.record") == 3 and actions.count("contract.paid") == 1
    assert actions[-1] == "payments.import"
    assert license_["license_key"] not in r.text

    # The same statement again (as XLSX this time) changes nothing.
    r = upload(backend, sales, xlsx_bytes(statement))
    assert r.status_code == 200, r.text
    assert (r.json()["imported"], r.json()["already_recorded"]) == (0, 4)
    assert len(payments_of(services, contract.id)) == 3


def _assert_rows(r: httpx.Response, expected: set[tuple[int, str]]) -> None:
    problem = assert_problem(r, 422, "validation_error")
    assert "nothing was imported" in problem["detail"]
    found = {(e["loc"][1], e["loc"][2]) for e in problem["errors"]}
    assert found == expected, problem["errors"]


def test_a_statement_with_any_bad_row_imports_nothing(backend: Backend) -> None:
    services = backend.services
    client_id = seed_client(services)
    contract = seed_contract(services, client_id, 100_000)
    record(backend, contract.number, 1000, source="bank", external_id="OLD")
    admin = new_staff(backend.client, services, backend.clock, Role.ADMIN)
    good = ["bank", "N-1", contract.number, 100_000, "RUB", "2026-01-14"]
    rows = [
        good,  # row 2: fine
        ["bank", "N-2", "no-such", 1, "RUB", "2026-01-14"],  # 3
        ["bank", "N-3", contract.number, "12.50", "RUB", "2026-01-14"],  # 4
        ["bank", "N-4", contract.number, 5, "USD", "2026-01-14"],  # 5
        ["bank", "N-5", contract.number, 5, "RUB", "14.01.2026"],  # 6
        ["bank", "N-1", contract.number, 100_000, "RUB", "2026-01-14"],  # 7: repeats row 2
        ["bank", "OLD", contract.number, 999, "RUB", "2026-01-14"],  # 8: conflicts
        ["", "N-6", contract.number, 5, "RUB", "2026-01-14"],  # 9
        ["bank", "N-7", contract.number, 0, "RUB", "2026-01-14"],  # 10
        ["bank", "N-8", contract.number, 5, "RUB", "2031-01-01"],  # 11
        ["bad source!", "N-9", contract.number, 5, "RUBL", "2026-01-14"],  # 12
    ]
    expected = {
        (3, "contract_number"),
        (4, "amount_minor"),
        (5, "currency"),
        (6, "paid_at"),
        (7, "external_id"),
        (8, "external_id"),
        (9, "source"),
        (10, "amount_minor"),
        (11, "paid_at"),
        (12, "source"),
        (12, "currency"),
    }
    before = len(payments_of(services, contract.id))
    _assert_rows(upload(backend, admin, csv_bytes(rows)), expected)
    _assert_rows(upload(backend, admin, xlsx_bytes(rows)), expected)
    # Blank rows are skipped, and the numbers stay those a spreadsheet shows.
    _assert_rows(
        upload(backend, admin, xlsx_bytes([good, [None] * 6, rows[2]])), {(4, "amount_minor")}
    )
    assert len(payments_of(services, contract.id)) == before
    assert contract_state(services, contract.id).status == "signed"
    assert "payments.import" not in audit_actions(backend, staff_actor(admin.id))


def test_unreadable_files_are_422_and_huge_ones_413(backend: Backend) -> None:
    admin = new_staff(backend.client, backend.services, backend.clock, Role.ADMIN)
    for data, query in (
        (b"", ""),
        (b"source,external_id\nbank,1\n", ""),
        (b"\xff\xfe\x00garbage", ""),
        (b"PK\x03\x04 not really a zip", ""),
        (csv_bytes([]), "?format=xlsx"),
        (json.dumps({"rows": []}).encode(), ""),
        (csv_bytes([["bank", "1", "x", "1", "RUB", "2026-01-14"]]), "?format=pdf"),
    ):
        assert_problem(upload(backend, admin, data, query), 422, "validation_error")
    # Larger than any JSON request, within the import's limit: read (and refused for content).
    big = csv_bytes([["bank", f"id-{i}", "x", "1", "RUB", "2026-01-14"] for i in range(3000)])
    assert len(big) > backend.settings.max_body_bytes
    assert_problem(upload(backend, admin, big), 422, "validation_error")
    huge = b"x" * (MAX_IMPORT_BYTES + 1)
    assert_problem(upload(backend, admin, huge), 413, "payload_too_large")
    # Elsewhere the usual limit holds.
    r = backend.client.post(
        "/staff/accounts", content=big, headers={**admin.headers, "Content-Type": "text/csv"}
    )
    assert_problem(r, 413, "payload_too_large")


def test_who_may_read_and_import_payments(backend: Backend) -> None:
    services = backend.services
    data = csv_bytes([])
    for role, read, write in (
        (Role.ADMIN, True, True),
        (Role.SALES, True, True),
        (Role.AUDIT, True, False),
        (Role.SUPPORT, False, False),
        (Role.IMPLEMENTATION, False, False),
    ):
        who = new_staff(backend.client, services, backend.clock, role)
        r = backend.client.get("/staff/payments", headers=who.headers)
        assert r.status_code == (200 if read else 403), (role, r.text)
        r = upload(backend, who, data)
        # An empty statement is a valid one: nothing to import.
        assert r.status_code == (200 if write else 403), (role, r.text)
    assert_problem(backend.client.get("/staff/payments"), 401, "token_invalid")
    assert_problem(upload_anonymous(backend), 401, "token_invalid")


def upload_anonymous(backend: Backend) -> httpx.Response:
    return backend.client.post("/staff/payments/import", content=csv_bytes([]))
