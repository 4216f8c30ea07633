"""The store's product catalogue over HTTP on SQLite and PostgreSQL: an Admin manages it
(audited), Support only reads it, and ``GET /products`` serves it from a cache with a TTL."""

from __future__ import annotations

from sqlalchemy import select

from server_stub.db import transaction
from server_stub.models import AuditEntry
from server_stub.services.staff import Role
from server_stub.store_models import StoreProduct
from tests.helpers.api import assert_problem
from tests.helpers.backend import Backend, BackendFactory
from tests.helpers.staff import new_staff

GEMS = {
    "id": "gems_500",
    "kind": "consumable",
    "title": "500 gems",
    "price_minor": 29900,
    "currency": "RUB",
    "points": 500,
}


def test_an_admin_manages_the_catalogue_and_each_change_is_audited(backend: Backend) -> None:
    client = backend.client
    admin = new_staff(client, backend.services, backend.clock, Role.ADMIN)
    support = new_staff(client, backend.services, backend.clock, Role.SUPPORT)
    made = client.post("/staff/store/products", headers=admin.headers, json=GEMS)
    assert made.status_code == 201, made.text
    assert made.json() == {**GEMS, "plan": None, "active": True}
    again = client.post("/staff/store/products", headers=admin.headers, json=GEMS)
    assert_problem(again, 409, "already_exists")
    both = client.post(
        "/staff/store/products", headers=admin.headers, json={**GEMS, "id": "x", "plan": "pro"}
    )
    assert_problem(both, 422, "validation_error")
    assert_problem(
        client.post("/staff/store/products", headers=support.headers, json=GEMS), 403, "forbidden"
    )
    seen = client.get("/staff/store/products", headers=support.headers)
    assert [p["id"] for p in seen.json()["products"]] == ["gems_500"]
    off = client.patch(
        "/staff/store/products/gems_500",
        headers=admin.headers,
        json={"active": False, "price_minor": 19900},
    )
    assert off.json()["active"] is False and off.json()["price_minor"] == 19900
    assert client.get("/products").json() == {"products": []}
    null = client.patch(
        "/staff/store/products/gems_500", headers=admin.headers, json={"plan": None}
    )
    assert_problem(null, 422, "validation_error")
    with transaction(backend.services.ctx.read) as session:
        actions = session.scalars(
            select(AuditEntry.action).where(AuditEntry.object == "store/products/gems_500")
        ).all()
    assert sorted(actions) == ["store.product.change", "store.product.create"]


def test_the_public_list_is_cached_for_the_configured_ttl(make_backend: BackendFactory) -> None:
    backend = make_backend(products_cache_ttl_seconds=30)
    catalogue = backend.services.store.products
    assert backend.client.get("/products").json() == {"products": []}
    # Another process's change (straight into the database) shows once the TTL has passed.
    with transaction(backend.services.ctx.write) as session:
        now = backend.clock.now()
        session.add(StoreProduct(**GEMS, plan=None, active=True, created_at=now, updated_at=now))
    assert backend.client.get("/products").json() == {"products": []}
    backend.clock.advance(31)
    assert [p["id"] for p in backend.client.get("/products").json()["products"]] == ["gems_500"]
    assert [p.id for p in catalogue.active()] == ["gems_500"]
