"""Clients in and out as CSV and XLSX, over HTTP on SQLite and PostgreSQL: every bad row named
with its number and column and nothing imported, a good file imported whole, exports that honour
the filters and import back."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest
from openpyxl import load_workbook
from sqlalchemy import delete

from server_stub.db import transaction
from server_stub.portal_models import Client
from server_stub.services.staff import Role
from server_stub.services.tabular import MAX_IMPORT_BYTES
from tests.helpers.api import assert_problem
from tests.helpers.backend import Backend
from tests.helpers.clients import XLSX_TYPE, make_inn, new_client, post_import, walk_pages
from tests.helpers.staff import StaffLogin, new_staff
from tests.helpers.tabular import table_file

HEADER = ["legal_name", "inn", "segment", "deployment", "manager_email", "contact_name",
          "contact_email", "contact_phone"]  # fmt: skip


def _file(fmt: str, rows: list[list[Any]], header: list[str] = HEADER) -> bytes:
    return table_file(fmt, rows, header)


def _clients(backend: Backend, headers: dict[str, str]) -> list[dict[str, Any]]:
    return walk_pages(backend.client, headers, "/staff/clients", limit=200)


@pytest.fixture
def sales(backend: Backend) -> StaffLogin:
    return new_staff(backend.client, backend.services, backend.clock, Role.SALES)


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_a_good_file_is_imported_whole_and_audited(
    backend: Backend, sales: StaffLogin, fmt: str
) -> None:
    rows = [
        ["ООО «Вектор»", make_inn(), "smb", "on_prem", sales.email.upper(), "Иван", "i@v.ru", ""],
        ["АО Ёж", make_inn(), "enterprise", "saas", "", "Пётр", "", "+7 (812) 000-00-00"],
        ["ИП Сидоров", make_inn(personal=True), "smb", "saas", "", "", "", ""],
    ]
    r = post_import(backend.client, sales.headers, _file(fmt, rows), fmt)
    assert r.status_code == 201, r.text
    assert r.json()["imported"] == 3 and len(r.json()["ids"]) == 3
    listed = {c["inn"]: c for c in _clients(backend, sales.headers)}
    assert set(listed) == {row[1] for row in rows}
    vector = listed[rows[0][1]]
    assert vector["manager_id"] == sales.id and vector["legal_name"] == "ООО «Вектор»"
    assert vector["contacts"] == [
        {"name": "Иван", "email": "i@v.ru", "phone": None, "position": None}
    ]
    assert listed[rows[2][1]]["contacts"] == [] and listed[rows[2][1]]["status"] == "active"
    assert listed[rows[1][1]]["contacts"][0]["phone"] == "+7 (812) 000-00-00"
    created = backend.services.audit.search(action="client.create").entries
    assert len(created) == 3 and {e.actor for e in created} == {f"staff:{sales.id}"}
    summary = backend.services.audit.search(action="clients.import").entries
    assert [e.details for e in summary] == [{"format": fmt, "rows": 3, "created": 3}]


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_every_bad_row_is_named_and_nothing_is_imported(
    backend: Backend, sales: StaffLogin, fmt: str
) -> None:
    existing = new_client(backend.client, sales.headers)
    support = new_staff(backend.client, backend.services, backend.clock, Role.SUPPORT, enrol=False)
    backend.services.staff.disable(f"staff:{sales.id}", support.id)
    twice = make_inn()
    rows = [
        ["ООО Хорошее", make_inn(), "smb", "on_prem", "", "", "", ""],  # row 2: good
        ["ООО Плохой ИНН", "7707083894", "smb", "on_prem", "", "", "", ""],  # 3: check digit
        ["ООО Раз", twice, "smb", "on_prem", "", "", "", ""],  # 4: good
        ["ООО Два", twice, "smb", "on_prem", "", "", "", ""],  # 5: same INN as row 4
        ["ООО Уже есть", existing["inn"], "smb", "on_prem", "", "", "", ""],  # 6: in the database
        ["ООО Менеджер", make_inn(), "smb", "on_prem", "nobody@x.ru", "", "", ""],  # 7
        ["ООО Уволен", make_inn(), "smb", "on_prem", support.email, "", "", ""],  # 8: disabled
        ["ООО Сегмент", make_inn(), "Крупный", "cloud", "", "", "", ""],  # 9: two columns
        ["", make_inn(), "smb", "on_prem", "", "Ян", "not-mail", "phone?"],  # 10: three
        ["ООО Контакт", make_inn(), "smb", "on_prem", "", "", "a@b.ru", ""],  # 11: no name
        ["ООО ИНН", "", "smb", "on_prem", "", "", "", ""],  # 12: missing INN
    ]
    r = post_import(backend.client, sales.headers, _file(fmt, rows), fmt)
    body = assert_problem(r, 422, "validation_error")
    assert "nothing was imported" in body["detail"]
    named = {(e["loc"][1], e["loc"][2] if len(e["loc"]) > 2 else None) for e in body["errors"]}
    assert named == {
        (3, "inn"),
        (5, "inn"),
        (6, "inn"),
        (7, "manager_email"),
        (8, "manager_email"),
        (9, "segment"),
        (9, "deployment"),
        (10, "legal_name"),
        (10, "contact_email"),
        (10, "contact_phone"),
        (11, "contact_name"),
        (12, "inn"),
    }, body["errors"]
    assert all(e["loc"][0] == "row" and e["msg"] for e in body["errors"])
    assert any("row 4" in e["msg"] for e in body["errors"] if e["loc"][1] == 5)
    assert [c["id"] for c in _clients(backend, sales.headers)] == [existing["id"]]
    assert len(backend.services.audit.search(action="client.create").entries) == 1
    assert backend.services.audit.search(action="clients.import").entries == []


def test_a_file_that_cannot_be_read_is_refused(backend: Backend, sales: StaffLogin) -> None:
    http = backend.client
    good = _file("csv", [["ООО А", make_inn(), "smb", "on_prem", "", "", "", ""]])
    cases: list[tuple[bytes, str, str]] = [
        (good, "application/json", "Content-Type"),
        (good, "text/plain", "Content-Type"),
        (b"", "text/csv", "empty"),
        (b"legal_name,inn\nA,7707083893\n", "text/csv", "segment"),
        (b"legal_name,inn,segment,deployment\n", "text/csv", "no data rows"),
        (b"\xff\xfe\x00garbage", "text/csv", "UTF-8"),
        (b"PK\x03\x04 not really a zip", XLSX_TYPE, "XLSX"),
        (good, XLSX_TYPE, "XLSX"),
        (b"legal_name,inn,inn,segment,deployment\n", "text/csv", "twice"),
    ]
    for data, content_type, words in cases:
        r = http.post(
            "/staff/imports/clients",
            headers={**sales.headers, "Content-Type": content_type},
            content=data,
        )
        assert words in assert_problem(r, 422, "validation_error")["detail"], (words, r.text)
    # Imports may be larger than other bodies (the upload cap), but not without end.
    big = good + b"x" * MAX_IMPORT_BYTES
    r = http.post(
        "/staff/imports/clients", headers={**sales.headers, "Content-Type": "text/csv"}, content=big
    )
    assert_problem(r, 413, "payload_too_large")
    assert _clients(backend, sales.headers) == []
    support = new_staff(http, backend.services, backend.clock, Role.SUPPORT, enrol=False)
    assert_problem(post_import(http, support.headers, good, "csv"), 403, "forbidden")


def test_an_xlsx_number_keeps_its_leading_zero(backend: Backend, sales: StaffLogin) -> None:
    inn = make_inn(4321, region="01")
    assert inn.startswith("01")
    rows = [["ООО Адыгея", int(inn), "smb", "on_prem", "", "", "", ""]]
    r = post_import(backend.client, sales.headers, _file("xlsx", rows), "xlsx")
    assert r.status_code == 201, r.text
    assert [c["inn"] for c in _clients(backend, sales.headers)] == [inn]


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_an_export_honours_the_filters_and_imports_back(
    backend: Backend, sales: StaffLogin, fmt: str
) -> None:
    http = backend.client
    made = [
        new_client(
            http,
            sales.headers,
            legal_name='=HYPERLINK("x") ООО «Формула»',
            manager_id=sales.id,
            contacts=[
                {
                    "name": "Анна",
                    "email": "anna@example.com",
                    "phone": "+7 495 1",
                    "position": "CEO",
                },
                {"name": "Второй контакт"},
            ],
        ),
        new_client(http, sales.headers, legal_name="АО Ёлка", segment="smb", deployment="saas"),
        new_client(http, sales.headers, legal_name="Другой сегмент", segment="enterprise"),
    ]
    r = http.get(
        "/staff/exports/clients", headers=sales.headers, params={"format": fmt, "segment": "smb"}
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/csv" if fmt == "csv" else XLSX_TYPE)
    assert f"clients.{fmt}" in r.headers["content-disposition"]
    if fmt == "csv":
        table = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))
    else:
        sheet = load_workbook(io.BytesIO(r.content)).worksheets[0]
        table = [
            ["" if v is None else str(v) for v in row] for row in sheet.iter_rows(values_only=True)
        ]
    header, *rows = table
    assert header[:3] == ["id", "legal_name", "inn"] and "manager_email" in header
    assert sorted(row[header.index("inn")] for row in rows) == sorted(c["inn"] for c in made[:2])
    formula = next(row for row in rows if row[0] == made[0]["id"])
    # Formula-like text goes out quoted so a spreadsheet shows it instead of running it.
    assert formula[header.index("legal_name")].startswith("'=")
    assert formula[header.index("contact_phone")] == "'+7 495 1"
    assert formula[header.index("manager_email")] == sales.email
    exported = backend.services.audit.search(action="clients.export").entries
    assert exported[0].details["rows"] == 2 and exported[0].details["filters"]["segment"] == "smb"

    # Round trip: remove the two clients, import the export, and they are back as they were.
    with transaction(backend.services.ctx.write) as session:
        session.execute(delete(Client).where(Client.id.in_([c["id"] for c in made[:2]])))
    r = post_import(http, sales.headers, r.content, fmt)
    assert r.status_code == 201, r.text
    back = {c["inn"]: c for c in _clients(backend, sales.headers)}
    for before in made[:2]:
        after = back[before["inn"]]
        for key in ("legal_name", "segment", "deployment", "status", "manager_id"):
            assert after[key] == before[key], key
        assert after["contacts"] == before["contacts"][:1]  # the first contact travels


def test_export_roles_and_bad_parameters(backend: Backend, sales: StaffLogin) -> None:
    http = backend.client
    auditor = new_staff(http, backend.services, backend.clock, Role.AUDIT, enrol=False)
    assert_problem(http.get("/staff/exports/clients", headers=auditor.headers), 403, "forbidden")
    for params in ({"format": "pdf"}, {"status": "x"}, {"segment": "Ё"}):
        r = http.get("/staff/exports/clients", headers=sales.headers, params=params)
        assert_problem(r, 422, "validation_error")
    empty = http.get("/staff/exports/clients", headers=sales.headers)
    assert empty.status_code == 200
    assert empty.content.decode("utf-8-sig").startswith("id,legal_name,inn")
