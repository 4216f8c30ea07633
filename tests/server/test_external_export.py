"""``GET /external/licenses/export`` over HTTP on SQLite and PostgreSQL: content as JSON and CSV,
filters, the signature over the query, no license key leaking, and 10,000 licenses."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from typing import Any

import pytest

from tests.helpers.api import assert_problem
from tests.helpers.backend import Backend, BackendFactory
from tests.helpers.external import (
    SECRET,
    license_row,
    seed_activation,
    seed_client,
    seed_license,
    seed_licenses,
    signed,
    signed_headers,
)

PATH = "/external/licenses/export"


@pytest.fixture
def billing(make_backend: BackendFactory) -> Backend:
    return make_backend(external_hmac_secrets=SECRET)


def export(backend: Backend, query: str = "") -> Any:
    r = signed(backend, "GET", PATH + query)
    assert r.status_code == 200, r.text
    return r


def csv_rows(text: str) -> list[dict[str, str]]:
    assert text.startswith("\ufeff")
    return list(csv.DictReader(io.StringIO(text[1:])))


def test_licenses_are_exported_with_their_activity_and_without_keys(billing: Backend) -> None:
    services, now = billing.services, billing.clock.now()
    client_id = seed_client(services, 'ООО "Ромашка", Москва')
    other_client = seed_client(services, "=1+2 АО Лютик")
    first = seed_license(services, client_id, plan="enterprise")
    second = seed_license(services, other_client, status="suspended", modules=[])
    seed_activation(services, first["id"], now - timedelta(seconds=60))
    seed_activation(services, first["id"], now - timedelta(seconds=30))
    # Silent longer than the license's window (600 s): not live, but its heartbeat is the latest
    # only if newer, which it is not.
    seed_activation(services, first["id"], now - timedelta(seconds=3600))
    seed_activation(services, first["id"], now - timedelta(seconds=10), deactivated=True)

    r = export(billing)
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert body["generated_at"] == "2026-01-15T12:00:00Z"
    by_id = {item["id"]: item for item in body["licenses"]}
    assert set(by_id) == {first["id"], second["id"]}
    one = by_id[first["id"]]
    assert one["client_id"] == client_id and one["client_legal_name"].startswith("ООО")
    assert len(one["client_inn"]) == 10
    assert (one["product"], one["plan"], one["status"]) == ("tgflow", "enterprise", "active")
    assert one["modules"] == ["ai_forecast", "multi_department"]
    assert one["live_activations"] == 2 and one["file_version"] == 1
    assert one["last_heartbeat_at"] == "2026-01-15T11:59:50Z"
    assert one["valid_until"] == "2027-01-15T12:00:00Z" and one["grace_days"] == 14
    assert one["license_key_hint"] == "…" + first["license_key"][-4:]
    two = by_id[second["id"]]
    assert (two["live_activations"], two["last_heartbeat_at"], two["modules"]) == (0, None, [])
    for key in (first["license_key"], second["license_key"]):
        assert key not in r.text and key[:-4] not in r.text

    r = export(billing, "?format=csv")
    assert r.headers["content-type"].startswith("text/csv")
    assert "licenses.csv" in r.headers["content-disposition"]
    rows = {row["id"]: row for row in csv_rows(r.text)}
    assert rows[first["id"]]["modules"] == "ai_forecast;multi_department"
    assert rows[first["id"]]["live_activations"] == "2"
    assert rows[second["id"]]["last_heartbeat_at"] == ""
    assert rows[first["id"]]["client_legal_name"] == 'ООО "Ромашка", Москва'
    # A name a spreadsheet would run as a formula is not one once exported (JSON keeps it).
    assert rows[second["id"]]["client_legal_name"] == "'=1+2 АО Лютик"
    assert by_id[second["id"]]["client_legal_name"] == "=1+2 АО Лютик"
    assert first["license_key"] not in r.text and first["license_key"][:-4] not in r.text


def test_filters_by_status_and_update_time(billing: Backend) -> None:
    services, now = billing.services, billing.clock.now()
    client_id = seed_client(services)
    old = seed_license(services, client_id, updated_at=now - timedelta(days=10))
    new = seed_license(services, client_id, updated_at=now - timedelta(hours=1))
    revoked = seed_license(services, client_id, status="revoked")

    def ids(query: str) -> set[str]:
        return {item["id"] for item in export(billing, query).json()["licenses"]}

    assert ids("") == {old["id"], new["id"], revoked["id"]}
    assert ids("?status=active") == {old["id"], new["id"]}
    assert ids("?status=revoked") == {revoked["id"]}
    assert ids("?updated_since=2026-01-14T00:00:00Z") == {new["id"], revoked["id"]}
    assert ids("?status=active&updated_since=2026-01-14T00:00:00%2B03:00") == {new["id"]}
    assert ids("?status=pending_approval") == set()
    csv_ids = {row["id"] for row in csv_rows(export(billing, "?format=csv&status=revoked").text)}
    assert csv_ids == {revoked["id"]}


def test_the_signature_covers_the_query(billing: Backend) -> None:
    seed_license(billing.services, seed_client(billing.services), status="revoked")
    headers = signed_headers(billing, "GET", PATH + "?status=active")
    assert billing.client.get(PATH + "?status=active", headers=headers).status_code == 200
    for target in (PATH + "?status=revoked", PATH, PATH + "?status=active&format=csv"):
        assert_problem(billing.client.get(target, headers=headers), 401, "token_invalid")
    assert_problem(billing.client.get(PATH), 401, "token_invalid")


def test_bad_queries_are_422(billing: Backend) -> None:
    for query in (
        "?format=xml",
        "?status=expired",
        "?status=",
        "?updated_since=yesterday",
        "?updated_since=2026-01-14",
        "?updated_since=2026-01-14T00:00:00",
    ):
        assert_problem(signed(billing, "GET", PATH + query), 422, "validation_error")


def test_ten_thousand_licenses_export_in_batches(billing: Backend) -> None:
    services, now = billing.services, billing.clock.now()
    client_id = seed_client(services)
    rows = [license_row(client_id, now) for _ in range(10_000)]
    seed_licenses(services, rows)
    seed_activation(services, rows[-1]["id"], now)
    body = export(billing).json()
    exported = body["licenses"]
    assert len(exported) == 10_000
    assert len({item["id"] for item in exported}) == 10_000
    assert sum(item["live_activations"] for item in exported) == 1
    assert len(csv_rows(export(billing, "?format=csv").text)) == 10_000
