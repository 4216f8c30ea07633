"""The portal's clients over HTTP on SQLite and PostgreSQL: create, read, change, archive, the
list's filters, search (Cyrillic too) and cursor pagination, bad input, roles and the audit."""

from __future__ import annotations

from typing import Any

import pytest

from server_stub.services.staff import Role
from tests.helpers.api import assert_problem
from tests.helpers.backend import Backend
from tests.helpers.clients import (
    LEGAL_INN,
    PERSONAL_INN,
    client_body,
    make_inn,
    new_client,
    walk_pages,
)
from tests.helpers.staff import StaffLogin, new_staff


@pytest.fixture
def sales(backend: Backend) -> StaffLogin:
    return new_staff(backend.client, backend.services, backend.clock, Role.SALES)


def test_a_client_is_created_read_changed_and_archived_with_every_step_audited(
    backend: Backend, sales: StaffLogin
) -> None:
    http = backend.client
    created = new_client(
        http, sales.headers, inn=PERSONAL_INN, manager_id=sales.id, legal_name="  ИП  Иванов "
    )
    assert created["legal_name"] == "ИП Иванов" and created["inn"] == PERSONAL_INN
    assert created["status"] == "active" and created["manager_id"] == sales.id
    assert created["contacts"][0]["email"] == "anna@example.com"
    got = http.get(f"/staff/clients/{created['id']}", headers=sales.headers)
    assert got.status_code == 200 and got.json() == created

    backend.clock.advance(60)
    r = http.patch(
        f"/staff/clients/{created['id']}",
        headers=sales.headers,
        json={"segment": "enterprise", "manager_id": None, "contacts": []},
    )
    assert r.status_code == 200, r.text
    changed = r.json()
    assert changed["segment"] == "enterprise" and changed["manager_id"] is None
    assert changed["contacts"] == [] and changed["updated_at"] > created["updated_at"]
    assert changed["legal_name"] == "ИП Иванов"  # what was not sent stays

    r = http.patch(
        f"/staff/clients/{created['id']}", headers=sales.headers, json={"status": "archived"}
    )
    assert r.status_code == 200 and r.json()["status"] == "archived"

    entries = backend.services.audit.search(obj=f"client/{created['id']}").entries
    assert [e.action for e in entries] == ["client.archive", "client.update", "client.create"]
    assert {e.actor for e in entries} == {f"staff:{sales.id}"}
    assert entries[2].details["inn"] == PERSONAL_INN and entries[2].details["contacts"] == 1
    assert entries[1].details == {
        "segment": ["smb", "enterprise"],
        "manager_id": [sales.id, None],
        "contacts": [1, 0],
    }
    # Contacts are personal data: the log holds how many, never who.
    assert "anna@example.com" not in str([e.details for e in entries])


def test_an_inn_is_unique_and_checked(backend: Backend, sales: StaffLogin) -> None:
    http = backend.client
    first = new_client(http, sales.headers, inn=LEGAL_INN)
    again = http.post("/staff/clients", headers=sales.headers, json=client_body(inn=LEGAL_INN))
    assert_problem(again, 409, "already_exists")
    other = new_client(http, sales.headers)
    taken = http.patch(
        f"/staff/clients/{other['id']}", headers=sales.headers, json={"inn": LEGAL_INN}
    )
    assert_problem(taken, 409, "already_exists")
    for inn in ("7707083894", "0000000000", "77070838", "77070838ab", "500100732258"):
        r = http.post("/staff/clients", headers=sales.headers, json=client_body(inn=inn))
        body = assert_problem(r, 422, "validation_error")
        assert [e["loc"] for e in body["errors"]] == [["body", "inn"]], body
    r = http.post("/staff/clients", headers=sales.headers, json=client_body(inn="7707083894"))
    assert "check digit" in assert_problem(r, 422, "validation_error")["errors"][0]["msg"]
    listed = walk_pages(http, sales.headers, "/staff/clients")
    assert sorted(c["inn"] for c in listed) == sorted([first["inn"], other["inn"]])


#: (field, value, where the 422 points).
BAD_CLIENT_INPUT: list[tuple[str, Any, list[Any]]] = [
    ("legal_name", "", ["body", "legal_name"]),
    ("legal_name", "A" * 301, ["body", "legal_name"]),
    ("legal_name", "ООО\x00Ноль", ["body", "legal_name"]),
    ("segment", "Малый бизнес", ["body", "segment"]),
    ("deployment", "cloud", ["body", "deployment"]),
    ("status", "deleted", ["body", "status"]),
    ("manager_id", "no-such-staff", ["body", "manager_id"]),
    ("contacts", [{"name": "A", "email": "not-an-address"}], ["body", "contacts", 0, "email"]),
    ("contacts", [{"name": "A", "phone": "call me"}], ["body", "contacts", 0, "phone"]),
    ("contacts", [{"name": ""}], ["body", "contacts", 0, "name"]),
    ("contacts", [{"name": "A"}] * 21, ["body", "contacts"]),
    ("contacts", [{"name": "A", "fax": "1"}], ["body", "contacts", 0, "fax"]),
    ("contacts", "Анна", ["body", "contacts"]),
    ("inn", 7707083893, ["body", "inn"]),
    ("unknown", 1, ["body", "unknown"]),
]


def test_bad_client_input_is_a_422_naming_the_field(backend: Backend, sales: StaffLogin) -> None:
    for field, value, loc in BAD_CLIENT_INPUT:
        r = backend.client.post(
            "/staff/clients", headers=sales.headers, json=client_body(**{field: value})
        )
        body = assert_problem(r, 422, "validation_error")
        assert loc in [e["loc"] for e in body["errors"]], (field, body)
    assert walk_pages(backend.client, sales.headers, "/staff/clients") == []
    assert backend.services.audit.search(action="client.create").entries == []


def test_a_manager_must_be_an_enabled_staff_member(backend: Backend, sales: StaffLogin) -> None:
    admin = new_staff(backend.client, backend.services, backend.clock, Role.ADMIN)
    other = new_staff(backend.client, backend.services, backend.clock, Role.SALES)
    client = new_client(backend.client, sales.headers, manager_id=other.id)
    assert client["manager_id"] == other.id
    backend.services.staff.disable(f"staff:{admin.id}", other.id)
    r = backend.client.post(
        "/staff/clients", headers=sales.headers, json=client_body(manager_id=other.id)
    )
    assert_problem(r, 422, "validation_error")
    r = backend.client.patch(
        f"/staff/clients/{client['id']}", headers=sales.headers, json={"manager_id": other.id}
    )
    assert r.status_code == 200  # unchanged: keeping a manager who left is not a new choice


def test_patch_refuses_nulls_unknown_clients_and_fields(
    backend: Backend, sales: StaffLogin
) -> None:
    http = backend.client
    client = new_client(http, sales.headers)
    url = f"/staff/clients/{client['id']}"
    too_many = [{"name": "A"}] * 21
    for body in (
        {"legal_name": None},
        {"inn": None},
        {"contacts": None},
        {"contacts": too_many},
        {"legal_name": "   "},
        {"id": "x"},
    ):
        assert_problem(http.patch(url, headers=sales.headers, json=body), 422, "validation_error")
    r = http.patch("/staff/clients/no-such-client", headers=sales.headers, json={"segment": "x"})
    assert_problem(r, 404, "not_found")
    assert_problem(http.get("/staff/clients/nope", headers=sales.headers), 404, "not_found")
    r = http.patch(
        url,
        headers=sales.headers,
        content=b"{not json",
    )
    assert_problem(r, 422, "validation_error")
    # Nothing changed, nothing audited beyond the creation.
    actions = [
        e.action for e in backend.services.audit.search(obj=f"client/{client['id']}").entries
    ]
    assert actions == ["client.create"]


def test_the_list_filters_and_searches(backend: Backend, sales: StaffLogin) -> None:
    http = backend.client
    manager = new_staff(http, backend.services, backend.clock, Role.SALES)
    made = {
        "romashka": new_client(http, sales.headers, legal_name="ООО «Ромашка»", segment="smb"),
        "yolka": new_client(
            http,
            sales.headers,
            legal_name="АО ЁЛКА-Трейд",
            segment="enterprise",
            deployment="saas",
            manager_id=manager.id,
        ),
        "acme": new_client(http, sales.headers, legal_name="Acme 100% Ltd_", inn=make_inn(990_001)),
        "prospect": new_client(
            http, sales.headers, legal_name="Ромашковое поле", status="prospect"
        ),
    }

    def names(**params: Any) -> set[str]:
        found = walk_pages(http, sales.headers, "/staff/clients", **params)
        return {k for k, c in made.items() for f in found if f["id"] == c["id"]}

    assert names() == set(made)
    assert names(segment="enterprise") == {"yolka"}
    assert names(deployment="saas") == {"yolka"}
    assert names(manager_id=manager.id) == {"yolka"}
    assert names(status="prospect") == {"prospect"}
    assert names(status="active", segment="smb") == {"romashka", "acme"}
    # Case-insensitive substring, Cyrillic included; ё and е are one letter.
    assert names(q="ромаш") == {"romashka", "prospect"}
    assert names(q="РОМАШКА") == {"romashka"}
    assert names(q="елка") == {"yolka"} == names(q="ёЛкА-тр")
    assert names(q="ACME") == {"acme"}
    # LIKE's wildcards are literal text.
    assert names(q="100%") == {"acme"} and names(q="%") == {"acme"} and names(q="_") == {"acme"}
    # Digits: a prefix of the INN too.
    assert names(q=made["acme"]["inn"][:5]) == {"acme"}
    assert names(q=made["acme"]["inn"][2:]) == set()  # a prefix, not any substring
    assert names(q=made["romashka"]["inn"]) == {"romashka"}
    assert names(q="нет такого") == set()
    for bad in ({"status": "gone"}, {"deployment": "x"}, {"segment": "Not A Code"}):
        r = http.get("/staff/clients", headers=sales.headers, params=bad)
        assert_problem(r, 422, "validation_error")


def test_pages_cover_every_client_once_in_a_stable_order(
    backend: Backend, sales: StaffLogin
) -> None:
    http = backend.client
    ids = []
    for i in range(13):
        # Several clients share a creation time: the id breaks the tie.
        if i % 3 == 0:
            backend.clock.advance(1)
        ids.append(new_client(http, sales.headers, segment="smb")["id"])
    new_client(http, sales.headers, segment="other")
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 5, "segment": "smb"}
        if cursor:
            params["cursor"] = cursor
        page = http.get("/staff/clients", headers=sales.headers, params=params).json()
        assert len(page["items"]) <= 5
        seen += [c["id"] for c in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
        # A client created meanwhile (newer) does not shift the pages that follow.
        new_client(http, sales.headers, segment="smb")
    assert pages == 3 and sorted(seen) == sorted(ids) and len(set(seen)) == 13
    everything = walk_pages(http, sales.headers, "/staff/clients", segment="smb", limit=200)
    keys = [(c["created_at"], c["id"]) for c in everything]
    assert keys == sorted(keys, reverse=True)
    exact = http.get(
        "/staff/clients", headers=sales.headers, params={"limit": 16, "segment": "smb"}
    )
    assert len(exact.json()["items"]) == 15 and exact.json()["next_cursor"] is None


GARBLED_CURSORS = [
    "garbage",
    "%%%%",
    "W10",  # base64 of "[]"
    "WyIyMDI2LTAxLTE1VDEyOjAwOjAwKzAwOjAwIiwiaWQiXQ",  # two fields, no filter digest
    "WyJub3QgYSB0aW1lIiwiaWQiLCIwMDAwMDAwMDAwMDAwMDAwIl0",  # not a time
    "WzEsMiwzXQ",  # numbers
    "A" * 600,
    "bnVsbA",  # null
]


def test_a_garbled_or_forged_cursor_is_a_422(backend: Backend, sales: StaffLogin) -> None:
    new_client(backend.client, sales.headers)
    for cursor in GARBLED_CURSORS:
        for path in ("/staff/clients", "/staff/contracts"):
            r = backend.client.get(path, headers=sales.headers, params={"cursor": cursor})
            assert_problem(r, 422, "validation_error")


def test_a_cursor_is_taken_back_only_by_the_query_that_made_it(
    backend: Backend, sales: StaffLogin
) -> None:
    http = backend.client
    for _ in range(3):
        new_client(http, sales.headers)
    page = http.get("/staff/clients", headers=sales.headers, params={"limit": 1}).json()
    assert page["next_cursor"]
    other = http.get(
        "/staff/clients",
        headers=sales.headers,
        params={"limit": 1, "segment": "smb", "cursor": page["next_cursor"]},
    )
    body = assert_problem(other, 422, "validation_error")
    assert "filters" in body["detail"]
    for limit in (0, 201, -1):
        r = http.get("/staff/clients", headers=sales.headers, params={"limit": limit})
        assert_problem(r, 422, "validation_error")


def test_roles(backend: Backend) -> None:
    http = backend.client
    logins = {
        role: new_staff(http, backend.services, backend.clock, role, enrol=role != Role.AUDIT)
        for role in Role
    }
    client = new_client(http, logins[Role.ADMIN].headers)
    for role in (Role.SUPPORT, Role.IMPLEMENTATION, Role.AUDIT):
        r = http.post("/staff/clients", headers=logins[role].headers, json=client_body())
        assert_problem(r, 403, "forbidden")
        r = http.patch(
            f"/staff/clients/{client['id']}", headers=logins[role].headers, json={"segment": "x"}
        )
        assert_problem(r, 403, "forbidden")
    for role in (Role.SUPPORT, Role.IMPLEMENTATION, Role.SALES):
        assert http.get("/staff/clients", headers=logins[role].headers).status_code == 200
    # Audit reads contracts and reports, not clients' contact data.
    assert_problem(http.get("/staff/clients", headers=logins[Role.AUDIT].headers), 403, "forbidden")
    assert_problem(http.get("/staff/clients"), 401, "token_invalid")
    assert http.get(f"/staff/clients/{client['id']}").status_code == 401


def test_a_nul_or_control_character_never_reaches_the_database(
    backend: Backend, sales: StaffLogin
) -> None:
    # PostgreSQL refuses NUL in text: unchecked, it would be a database error, not a 422.
    http = backend.client
    client = new_client(http, sales.headers)
    for path, params in (
        ("/staff/clients", {"q": "ООО\x00"}),
        ("/staff/clients", {"manager_id": "a\x00b"}),
        ("/staff/contracts", {"client_id": "\x00"}),
        (f"/staff/clients/{client['id']}/notes", {"license_id": "x\x00"}),
        ("/staff/clients/a%00b", {}),
        ("/staff/contracts/%00", {}),
        ("/staff/products/tg%00flow", {}),
    ):
        r = http.get(path, headers=sales.headers, params=params)
        assert_problem(r, 422, "validation_error")
    r = http.post(
        f"/staff/clients/{client['id']}/notes", headers=sales.headers, json={"body": "a\x00"}
    )
    assert_problem(r, 422, "validation_error")
