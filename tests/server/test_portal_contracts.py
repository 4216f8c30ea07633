"""Contracts, products with their modules, and notes over HTTP on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import update

from server_stub.db import transaction
from server_stub.portal_models import Contract
from server_stub.services.staff import Role
from tests.helpers.api import assert_problem
from tests.helpers.backend import Backend
from tests.helpers.clients import contract_body, new_client, new_contract, walk_pages
from tests.helpers.staff import StaffLogin, new_staff


@pytest.fixture
def sales(backend: Backend) -> StaffLogin:
    return new_staff(backend.client, backend.services, backend.clock, Role.SALES)


def _mark_paid(backend: Backend, contract_id: str) -> None:
    """What a payment does (``/external/payments`` is another capability's)."""
    ctx = backend.services.ctx
    with transaction(ctx.write) as session:
        session.execute(
            update(Contract).where(Contract.id == contract_id).values(paid_at=ctx.clock.now())
        )


def test_a_contract_is_created_changed_and_closed_with_every_step_audited(
    backend: Backend, sales: StaffLogin
) -> None:
    http = backend.client
    client = new_client(http, sales.headers)
    made = new_contract(http, sales.headers, client["id"], status="draft", number="№ 12/2026-ЛП")
    assert made["client_id"] == client["id"] and made["status"] == "draft"
    assert made["amount_minor"] == 15_000_000 and made["currency"] == "RUB"
    assert made["paid"] is False and made["paid_at"] is None
    assert made["documents"] == [
        {"title": "Договор", "url": "https://docs.example.com/contract.pdf"}
    ]
    url = f"/staff/contracts/{made['id']}"
    assert http.get(url, headers=sales.headers).json() == made
    r = http.patch(url, headers=sales.headers, json={"status": "signed", "sla": None})
    assert r.status_code == 200 and r.json()["status"] == "signed" and r.json()["sla"] is None
    back = http.patch(url, headers=sales.headers, json={"status": "draft"})
    assert "back" in assert_problem(back, 422, "validation_error")["detail"]
    assert http.patch(url, headers=sales.headers, json={"status": "closed"}).json()["status"] == (
        "closed"
    )
    entries = backend.services.audit.search(obj=f"contract/{made['id']}").entries
    assert [e.action for e in entries] == ["contract.update", "contract.update", "contract.create"]
    assert entries[0].details == {"status": ["signed", "closed"]}
    assert entries[2].details["amount_minor"] == 15_000_000
    assert all(e.actor == f"staff:{sales.id}" for e in entries)


def test_paid_is_set_by_payments_only_and_fixes_the_amount(
    backend: Backend, sales: StaffLogin
) -> None:
    http = backend.client
    client = new_client(http, sales.headers)
    made = new_contract(http, sales.headers, client["id"])
    url = f"/staff/contracts/{made['id']}"
    too_many = [{"title": "A", "url": "https://a/"}] * 21
    for body in (
        {"status": "paid"},
        {"paid": True},
        {"paid_at": "2026-01-01T00:00:00Z"},
        {"documents": too_many},
        {"documents": None},
        {"signed_on": 0},
        {"number": None},
    ):
        assert_problem(http.patch(url, headers=sales.headers, json=body), 422, "validation_error")
    _mark_paid(backend, made["id"])
    assert http.get(url, headers=sales.headers).json()["paid"] is True
    r = http.patch(url, headers=sales.headers, json={"amount_minor": 1})
    assert "paid" in assert_problem(r, 422, "validation_error")["detail"]
    ok = http.patch(url, headers=sales.headers, json={"sla": "24×7"})
    assert ok.status_code == 200 and ok.json()["paid"] is True


BAD_CONTRACT_INPUT: list[tuple[str, Any, list[Any]]] = [
    ("number", "", ["body", "number"]),
    ("number", "N" * 65, ["body", "number"]),
    ("signed_on", "2026-02-30", ["body", "signed_on"]),
    ("signed_on", "yesterday", ["body", "signed_on"]),
    ("amount_minor", -1, ["body", "amount_minor"]),
    ("amount_minor", 2**63, ["body", "amount_minor"]),
    ("amount_minor", 10.5, ["body", "amount_minor"]),
    ("amount_minor", True, ["body", "amount_minor"]),
    ("amount_minor", "100", ["body", "amount_minor"]),
    ("currency", "rub", ["body", "currency"]),
    ("currency", "RUBL", ["body", "currency"]),
    ("sla", "x" * 201, ["body", "sla"]),
    ("status", "paid", ["body", "status"]),
    (
        "documents",
        [{"title": "A", "url": "http://docs.example.com/a"}],
        ["body", "documents", 0, "url"],
    ),
    (
        "documents",
        [{"title": "A", "url": "javascript:alert(1)"}],
        ["body", "documents", 0, "url"],
    ),
    ("documents", [{"title": "A", "url": "https://"}], ["body", "documents", 0, "url"]),
    ("documents", [{"title": "A", "url": "https://u:p@host/x"}], ["body", "documents", 0, "url"]),
    ("documents", [{"title": "A", "url": "https://a b/"}], ["body", "documents", 0, "url"]),
    ("documents", [{"title": "", "url": "https://a/"}], ["body", "documents", 0, "title"]),
    ("documents", [{"title": "A", "url": "https://a/"}] * 21, ["body", "documents"]),
]


def test_bad_contract_input_is_a_422_naming_the_field(backend: Backend, sales: StaffLogin) -> None:
    http = backend.client
    client = new_client(http, sales.headers)
    for field, value, loc in BAD_CONTRACT_INPUT:
        r = http.post(
            f"/staff/clients/{client['id']}/contracts",
            headers=sales.headers,
            json=contract_body(**{field: value}),
        )
        body = assert_problem(r, 422, "validation_error")
        assert loc in [e["loc"] for e in body["errors"]], (field, body)
    taken = new_contract(http, sales.headers, client["id"])
    again = http.post(
        f"/staff/clients/{client['id']}/contracts",
        headers=sales.headers,
        json=contract_body(number=taken["number"]),
    )
    assert_problem(again, 409, "already_exists")
    nobody = http.post(
        "/staff/clients/no-such/contracts", headers=sales.headers, json=contract_body()
    )
    assert_problem(nobody, 404, "not_found")
    http.patch(f"/staff/clients/{client['id']}", headers=sales.headers, json={"status": "archived"})
    archived = http.post(
        f"/staff/clients/{client['id']}/contracts", headers=sales.headers, json=contract_body()
    )
    assert "archived" in assert_problem(archived, 422, "validation_error")["detail"]


def test_contract_lists_filter_and_page(backend: Backend, sales: StaffLogin) -> None:
    http = backend.client
    one = new_client(http, sales.headers)
    two = new_client(http, sales.headers)
    made = {
        "a": new_contract(http, sales.headers, one["id"], signed_on="2026-01-05", status="draft"),
        "b": new_contract(http, sales.headers, one["id"], signed_on="2026-02-01"),
        "c": new_contract(http, sales.headers, two["id"], signed_on="2026-02-01"),
        "d": new_contract(http, sales.headers, two["id"], signed_on="2026-03-15", status="closed"),
    }
    _mark_paid(backend, made["c"]["id"])

    def names(path: str = "/staff/contracts", **params: Any) -> list[str]:
        found = walk_pages(http, sales.headers, path, limit=1, **params)
        by_id = {c["id"]: k for k, c in made.items()}
        return [by_id[c["id"]] for c in found]

    everything = names()
    assert sorted(everything) == ["a", "b", "c", "d"] and everything[0] == "d"
    assert everything[-1] == "a"
    assert sorted(names(f"/staff/clients/{one['id']}/contracts")) == ["a", "b"]
    assert sorted(names(client_id=two["id"])) == ["c", "d"]
    assert names(status="draft") == ["a"]
    assert names(paid=True) == ["c"]
    assert sorted(names(paid=False)) == ["a", "b", "d"]
    assert sorted(names(signed_from="2026-02-01", signed_to="2026-02-01")) == ["b", "c"]
    assert names(signed_from="2026-03-01") == ["d"]
    assert names(signed_to="2026-01-31") == ["a"]
    for bad in (
        {"signed_from": "2026-03-01", "signed_to": "2026-01-01"},
        {"signed_from": "March"},
        {"status": "lost"},
        {"paid": "maybe"},
    ):
        r = http.get("/staff/contracts", headers=sales.headers, params=bad)
        assert_problem(r, 422, "validation_error")
    r = http.get("/staff/clients/nope/contracts", headers=sales.headers)
    assert_problem(r, 404, "not_found")


def test_contract_roles(backend: Backend) -> None:
    http = backend.client
    admin = new_staff(http, backend.services, backend.clock, Role.ADMIN)
    auditor = new_staff(http, backend.services, backend.clock, Role.AUDIT, enrol=False)
    support = new_staff(http, backend.services, backend.clock, Role.SUPPORT, enrol=False)
    client = new_client(http, admin.headers)
    contract = new_contract(http, admin.headers, client["id"])
    # Audit reads contracts (finance, lawyers) but writes nothing; Support does not see them.
    assert http.get("/staff/contracts", headers=auditor.headers).status_code == 200
    url = f"/staff/contracts/{contract['id']}"
    assert http.get(url, headers=auditor.headers).status_code == 200
    assert_problem(http.patch(url, headers=auditor.headers, json={"sla": "x"}), 403, "forbidden")
    assert_problem(http.get(url, headers=support.headers), 403, "forbidden")
    r = http.post(
        f"/staff/clients/{client['id']}/contracts", headers=support.headers, json=contract_body()
    )
    assert_problem(r, 403, "forbidden")


def test_the_default_product_and_the_module_catalogue(backend: Backend) -> None:
    http = backend.client
    admin = new_staff(http, backend.services, backend.clock, Role.ADMIN)
    sales = new_staff(http, backend.services, backend.clock, Role.SALES)
    support = new_staff(http, backend.services, backend.clock, Role.SUPPORT, enrol=False)
    products = http.get("/staff/products", headers=support.headers).json()
    assert [p["id"] for p in products] == ["tgflow"]
    assert {m["code"] for m in products[0]["modules"]} >= {"broadcast", "anti_spam"}

    r = http.post(
        "/staff/products/tgflow/modules",
        headers=admin.headers,
        json={
            "code": "ai_forecast",
            "name": "AI Forecast",
            "list_price": {"amount_minor": 50_000_00, "currency": "RUB"},
        },
    )
    assert r.status_code == 201, r.text
    assert r.json()["list_price"] == {"amount_minor": 5_000_000, "currency": "RUB"}
    again = http.post(
        "/staff/products/tgflow/modules",
        headers=admin.headers,
        json={"code": "ai_forecast", "name": "X"},
    )
    assert_problem(again, 409, "already_exists")
    module_url = "/staff/products/tgflow/modules/ai_forecast"
    r = http.patch(module_url, headers=admin.headers, json={"name": "ИИ-прогноз"})
    assert r.json()["name"] == "ИИ-прогноз" and r.json()["list_price"] is not None
    r = http.patch(module_url, headers=admin.headers, json={"list_price": None})
    assert r.json()["list_price"] is None and r.json()["name"] == "ИИ-прогноз"
    retired = http.post(module_url + "/retire", headers=admin.headers)
    assert retired.status_code == 200 and retired.json()["retired"]
    assert http.post(module_url + "/retire", headers=admin.headers).json() == retired.json()

    created = http.post(
        "/staff/products", headers=admin.headers, json={"id": "tgflow-server", "name": "Server"}
    )
    assert created.status_code == 201 and created.json()["modules"] == []
    assert_problem(
        http.post("/staff/products", headers=admin.headers, json={"id": "tgflow", "name": "x"}),
        409,
        "already_exists",
    )
    renamed = http.patch("/staff/products/tgflow-server", headers=admin.headers, json={"name": "S"})
    assert renamed.json()["name"] == "S"
    got = http.get("/staff/products/tgflow", headers=sales.headers).json()
    assert {"code": "ai_forecast", "retired": True}.items() <= next(
        m for m in got["modules"] if m["code"] == "ai_forecast"
    ).items()

    for bad in (
        {"code": "AI", "name": "x"},
        {"code": "1ai", "name": "x"},
        {"code": "ai", "name": ""},
        {"code": "ai", "name": "x", "list_price": {"amount_minor": -1, "currency": "RUB"}},
        {"code": "ai", "name": "x", "list_price": {"amount_minor": 1, "currency": "rub"}},
        {"code": "ai", "name": "x", "list_price": {"amount_minor": 1}},
    ):
        r = http.post("/staff/products/tgflow/modules", headers=admin.headers, json=bad)
        assert_problem(r, 422, "validation_error")
    for path in ("/staff/products/nope", "/staff/products/nope/modules/x/retire"):
        method = "GET" if path.endswith("nope") else "POST"
        assert_problem(http.request(method, path, headers=admin.headers), 404, "not_found")
    r = http.patch("/staff/products/tgflow/modules/nope", headers=admin.headers, json={"name": "x"})
    assert_problem(r, 404, "not_found")

    # Only an Admin changes the catalogue.
    assert_problem(
        http.post("/staff/products", headers=sales.headers, json={"id": "x", "name": "x"}),
        403,
        "forbidden",
    )
    assert_problem(http.post(module_url + "/retire", headers=sales.headers), 403, "forbidden")
    actions = [e.action for e in backend.services.audit.search(obj="product").entries]
    assert actions == [
        "product.update",
        "product.create",
        "product.module_retire",
        "product.module_update",
        "product.module_update",
        "product.module_add",
    ]


def test_notes_on_a_client(backend: Backend) -> None:
    http = backend.client
    sales = new_staff(http, backend.services, backend.clock, Role.SALES)
    support = new_staff(http, backend.services, backend.clock, Role.SUPPORT, enrol=False)
    auditor = new_staff(http, backend.services, backend.clock, Role.AUDIT, enrol=False)
    client = new_client(http, sales.headers)
    url = f"/staff/clients/{client['id']}/notes"
    bodies = []
    for i in range(3):
        backend.clock.advance(1)
        body = f"Звонок №{i}: просит продление\nна год"
        r = http.post(url, headers=support.headers, json={"body": body})
        assert r.status_code == 201, r.text
        assert r.json()["author"] == f"staff:{support.id}" and r.json()["license_id"] is None
        bodies.append(body)
    notes = walk_pages(http, sales.headers, url, limit=2)
    assert [n["body"] for n in notes] == bodies[::-1]
    for bad in ({"body": ""}, {"body": "   "}, {"body": "x" * 10_001}, {"body": "a\x07b"}):
        assert_problem(http.post(url, headers=support.headers, json=bad), 422, "validation_error")
    r = http.post(url, headers=support.headers, json={"body": "x", "license_id": "no-such"})
    assert "license" in assert_problem(r, 422, "validation_error")["detail"]
    r = http.post("/staff/clients/nope/notes", headers=support.headers, json={"body": "x"})
    assert_problem(r, 404, "not_found")
    assert_problem(http.post(url, headers=auditor.headers, json={"body": "x"}), 403, "forbidden")
    assert_problem(http.get(url, headers=auditor.headers), 403, "forbidden")
    entries = backend.services.audit.search(action="client.note").entries
    assert len(entries) == 3 and all(e.object == f"client/{client['id']}" for e in entries)
    assert "продление" not in str([e.details for e in entries])
