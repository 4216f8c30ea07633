"""Clients, contracts and products of the license portal for the server tests (over HTTP)."""

from __future__ import annotations

import itertools
from typing import Any

import httpx

from server_stub.services.clients.inn import is_valid_inn
from tests.helpers.tabular import XLSX_TYPE, post_file  # noqa: F401 (re-exported)

#: Known valid INNs (a legal entity's and an individual entrepreneur's).
LEGAL_INN = "7707083893"
PERSONAL_INN = "500100732259"
_serial = itertools.count(1)
_W10 = (2, 4, 10, 3, 5, 9, 4, 6, 8)
_W11 = (7, 2, 4, 10, 3, 5, 9, 4, 6, 8)
_W12 = (3, 7, 2, 4, 10, 3, 5, 9, 4, 6, 8)


def _digit(digits: str, weights: tuple[int, ...]) -> str:
    return str(sum(int(d) * w for d, w in zip(digits, weights, strict=True)) % 11 % 10)


def make_inn(n: int | None = None, *, personal: bool = False, region: str = "77") -> str:
    """A valid INN, different for each ``n`` (the next serial when not given).

    Computed independently of the service's code, so a mistake there does not hide here.
    """
    n = next(_serial) if n is None else n
    if personal:
        body = f"{region}{n:08d}"
        body += _digit(body, _W11)
        inn = body + _digit(body, _W12)
    else:
        body = f"{region}{n:07d}"
        inn = body + _digit(body, _W10)
    assert is_valid_inn(inn)
    return inn


def client_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "legal_name": "ООО «Ромашка»",
        "inn": make_inn(),
        "segment": "smb",
        "deployment": "on_prem",
        "contacts": [
            {"name": "Анна Петрова", "email": "anna@example.com", "phone": "+7 495 123-45-67"}
        ],
    }
    body.update(overrides)
    return body


def new_client(client: httpx.Client, headers: dict[str, str], **overrides: Any) -> dict[str, Any]:
    r = client.post("/staff/clients", headers=headers, json=client_body(**overrides))
    assert r.status_code == 201, r.text
    created: dict[str, Any] = r.json()
    return created


def contract_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "number": f"Д-{next(_serial)}/2026",
        "signed_on": "2026-01-10",
        "amount_minor": 150_000_00,
        "currency": "RUB",
        "sla": "8×5, ответ в течение 4 часов",
        "documents": [{"title": "Договор", "url": "https://docs.example.com/contract.pdf"}],
    }
    body.update(overrides)
    return body


def new_contract(
    client: httpx.Client, headers: dict[str, str], client_id: str, **overrides: Any
) -> dict[str, Any]:
    r = client.post(
        f"/staff/clients/{client_id}/contracts", headers=headers, json=contract_body(**overrides)
    )
    assert r.status_code == 201, r.text
    created: dict[str, Any] = r.json()
    return created


def walk_pages(
    client: httpx.Client, headers: dict[str, str], path: str, **params: Any
) -> list[dict[str, Any]]:
    """Every item of a cursor-paginated list, following ``next_cursor`` to the end."""
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    for _ in range(1000):
        query = {**params, **({"cursor": cursor} if cursor else {})}
        r = client.get(path, headers=headers, params=query)
        assert r.status_code == 200, r.text
        page = r.json()
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items
    raise AssertionError("the pages never ended")


def post_import(
    client: httpx.Client, headers: dict[str, str], data: bytes, fmt: str
) -> httpx.Response:
    """Upload a CSV or XLSX file to the clients' import (the file is the request body)."""
    return post_file(client, headers, "/staff/imports/clients", data, fmt)
