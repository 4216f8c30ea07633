"""The product API (``/licenses/activate``, ``/licenses/heartbeat``, ``GET /licenses/{key}``)
and staff monitoring of activations, over HTTP on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import json
from typing import Any

import jwt
import pytest
from sqlalchemy import event, select

from agent.protocol import MACHINE_ACTIVATION_TYP, REVOCATION_ARMOUR_BEGIN
from server_stub.db import transaction
from server_stub.models import AuditEntry
from server_stub.portal_models import Activation, ModuleUsage
from server_stub.services import revocations
from server_stub.services.staff import Role
from tests.helpers.activation import (
    activate_body,
    fingerprint,
    heartbeat_body,
    make_license,
    renew,
    set_status,
)
from tests.helpers.api import assert_problem
from tests.helpers.backend import Backend
from tests.helpers.staff import new_staff


def _claims(jws: str) -> dict[str, Any]:
    part = jws.split(".")[1]
    loaded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return loaded


def _activate(backend: Backend, body: dict[str, Any]) -> dict[str, Any]:
    r = backend.client.post("/licenses/activate", json=body)
    assert r.status_code == 200, r.text
    reply: dict[str, Any] = r.json()
    return reply


def test_activation_returns_a_signed_machine_activation_and_the_file(backend: Backend) -> None:
    lic = make_license(backend.services, max_activations=2)
    fp = fingerprint()
    reply = _activate(backend, activate_body(lic, fp))
    key = backend.services.signer.current()
    header = jwt.get_unverified_header(reply["activation"])
    assert header["typ"] == MACHINE_ACTIVATION_TYP and header["kid"] == key.kid
    claims = jwt.decode(reply["activation"], key.public_key, algorithms=["ES256"])  # type: ignore[arg-type]
    assert claims["fingerprint"] == fp and claims["activation_id"] == reply["activation_id"]
    assert claims["license_key"] == lic.key and claims["file_version"] == 1
    assert claims["modules"] == ["ai_forecast"]
    assert reply["state"] == "active" and reply["file_version"] == 1
    assert reply["license_file"].startswith("-----BEGIN TGFLOW LICENSE-----")
    assert REVOCATION_ARMOUR_BEGIN in reply["license_file"]
    assert reply["heartbeat_window_s"] == 600 and reply["heartbeat_interval_s"] == 300
    assert reply["limits"]["users"] == 50
    # The same machine again gets its live activation back, not a second slot.
    again = _activate(backend, activate_body(lic, fp))
    assert again["activation_id"] == reply["activation_id"]
    with transaction(backend.services.ctx.read) as session:
        rows = session.scalars(select(Activation).where(Activation.license_id == lic.id)).all()
        assert len(rows) == 1 and rows[0].ip == "127.0.0.1" and rows[0].server_id == "srv-1"
        actions = session.scalars(
            select(AuditEntry.action).where(AuditEntry.object.like(f"license/{lic.id}/%"))
        ).all()
    assert actions == ["activation.activate"]


def test_unknown_key_is_a_plain_not_found(backend: Backend) -> None:
    lic = make_license(backend.services)
    body = activate_body(lic)
    body["license_key"] = "TGF-" + "0" * 32
    problem = assert_problem(backend.client.post("/licenses/activate", json=body), 404, "not_found")
    assert lic.key not in problem["detail"]
    hb = {
        "license_key": body["license_key"],
        "activation_id": "0" * 8 + "-0000-0000-0000-" + "0" * 12,
        "fingerprint": fingerprint(),
        "product_version": "2.4",
        "file_version": 1,
    }
    assert_problem(backend.client.post("/licenses/heartbeat", json=hb), 404, "not_found")
    assert_problem(backend.client.get(f"/licenses/{body['license_key']}"), 404, "not_found")


def test_status(backend: Backend) -> None:
    lic = make_license(backend.services, mandatory_min_version="2.2")
    r = backend.client.get(f"/licenses/{lic.key}")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["state"] == "active" and body["file_version"] == 1 and body["plan"] == "advanced"
    assert body["modules"] == ["ai_forecast", "multi_department"]
    assert body["grace_until"] - body["valid_until"] == 14 * 86400
    assert body["mandatory_min_version"] == "2.2"
    backend.clock.advance(366 * 86400)
    assert backend.client.get(f"/licenses/{lic.key}").json()["state"] == "in_grace"
    backend.clock.advance(14 * 86400)
    assert backend.client.get(f"/licenses/{lic.key}").json()["state"] == "expired"


@pytest.mark.parametrize(
    ("columns", "detail"),
    [
        ({"status": "revoked"}, "revoked"),
        ({"status": "suspended"}, "suspended"),
        ({"status": "pending_approval"}, "approval"),
        ({"paid": False}, "awaiting payment"),
        ({"version": 0}, "no signed license file"),
    ],
)
def test_inactive_licenses_are_refused(
    backend: Backend, columns: dict[str, Any], detail: str
) -> None:
    lic = make_license(backend.services, **columns)
    r = backend.client.post("/licenses/activate", json=activate_body(lic))
    assert detail in assert_problem(r, 403, "license_inactive")["detail"]


def test_a_paid_contract_and_expiry(backend: Backend) -> None:
    lic = make_license(backend.services, paid=True)
    _activate(backend, activate_body(lic))
    backend.clock.advance((365 + 15) * 86400)
    r = backend.client.post("/licenses/activate", json=activate_body(lic))
    assert "expired" in assert_problem(r, 403, "license_inactive")["detail"]


@pytest.mark.parametrize(
    "fields",
    [
        {"domain": "evil.example.com"},
        {"domain": None},
        {"product_version": "3.0"},
        {"product_version": "1.9"},
        {"modules": ["ai_forecast", "telephony"]},
    ],
)
def test_installations_outside_the_license_are_forbidden(
    backend: Backend, fields: dict[str, Any]
) -> None:
    lic = make_license(backend.services)
    r = backend.client.post("/licenses/activate", json=activate_body(lic, **fields))
    assert_problem(r, 403, "forbidden")


def test_wildcard_domain(backend: Backend) -> None:
    lic = make_license(backend.services, domain="*.example.com")
    _activate(backend, activate_body(lic, domain="crm.example.com"))
    r = backend.client.post("/licenses/activate", json=activate_body(lic, domain="example.com"))
    assert_problem(r, 403, "forbidden")


@pytest.mark.parametrize(
    "change",
    [
        {"license_key": "short"},
        {"license_key": 42},
        {"fingerprint": "x"},
        {"fingerprint": "a" * 300},
        {"server_id": ""},
        {"server_id": "a\nb"},
        {"product_version": "v2"},
        {"domain": "-bad-"},
        {"modules": ["BAD MODULE"]},
        {"modules": ["m"] * 65},
        {"replace_activation_id": "not-an-id"},
        {"unknown": 1},
    ],
)
def test_bad_activation_input_is_422(backend: Backend, change: dict[str, Any]) -> None:
    lic = make_license(backend.services)
    r = backend.client.post("/licenses/activate", json=activate_body(lic) | change)
    assert_problem(r, 422, "validation_error")


@pytest.mark.parametrize(
    "change",
    [
        {"activation_id": "x"},
        {"file_version": 0},
        {"file_version": 1.5},
        {"file_version": 1_000_001},
        {"errors": [{"code": "e"}] * 21},
        {"errors": [{"code": "", "message": "m"}]},
        {"errors": [{"code": "e", "message": "m" * 501}]},
    ],
)
def test_bad_heartbeat_input_is_422(backend: Backend, change: dict[str, Any]) -> None:
    lic = make_license(backend.services)
    fp = fingerprint()
    reply = _activate(backend, activate_body(lic, fp))
    r = backend.client.post("/licenses/heartbeat", json=heartbeat_body(lic, reply, fp) | change)
    assert_problem(r, 422, "validation_error")


def test_bad_paths_and_bodies_are_never_500(backend: Backend) -> None:
    for path in ("/licenses/%00", "/licenses/" + "A" * 200, "/licenses/a-b"):
        assert backend.client.get(path).status_code in (404, 422)
    for body in (b"", b"[]", b"{", b"null", "\ud800".encode("utf-8", "surrogatepass")):
        r = backend.client.post(
            "/licenses/activate", content=body, headers={"content-type": "application/json"}
        )
        assert r.status_code in (400, 422), r.text


def test_heartbeat_records_the_machine_and_counts_modules(backend: Backend) -> None:
    lic = make_license(backend.services)
    fp = fingerprint()
    reply = _activate(backend, activate_body(lic, fp))
    body = heartbeat_body(
        lic,
        reply,
        fp,
        product_version="2.5",
        modules=["ai_forecast", "multi_department", "unlicensed"],
        errors=[{"code": "smtp", "message": "connection refused"}],
    )
    for _ in range(2):
        backend.clock.advance(60)
        r = backend.client.post("/licenses/heartbeat", json=body)
        assert r.status_code == 200, r.text
    hb = r.json()
    assert hb["activation_live"] is True and hb["state"] == "active"
    assert hb["license_file"] is None and hb["file_version"] == 1
    assert hb["next_heartbeat_s"] == 300
    assert _claims(hb["revocation_list"])["revoked"] == []
    with transaction(backend.services.ctx.read) as session:
        row = session.get_one(Activation, reply["activation_id"])
        usage = {
            u.module: u.heartbeats
            for u in session.scalars(select(ModuleUsage).where(ModuleUsage.license_id == lic.id))
        }
    assert row.product_version == "2.5" and row.heartbeats == 2
    assert row.errors == [{"code": "smtp", "message": "connection refused"}]
    assert row.last_heartbeat_at == backend.clock.now()
    assert usage == {"ai_forecast": 2, "multi_department": 2}


def test_heartbeat_of_another_machine_or_activation_is_not_live(backend: Backend) -> None:
    lic = make_license(backend.services)
    other = make_license(backend.services)
    fp = fingerprint()
    reply = _activate(backend, activate_body(lic, fp))
    theirs = _activate(backend, activate_body(other))
    for body in (
        heartbeat_body(lic, reply, fingerprint()),
        heartbeat_body(lic, theirs, fp),
        heartbeat_body(lic, reply, fp, activation_id="0" * 8 + "-0000-0000-0000-" + "0" * 12),
    ):
        r = backend.client.post("/licenses/heartbeat", json=body)
        assert r.status_code == 200 and r.json()["activation_live"] is False, r.text
        assert r.json()["license_file"] is None


def test_a_renewal_rides_on_the_next_heartbeat(backend: Backend) -> None:
    lic = make_license(backend.services)
    fp = fingerprint()
    reply = _activate(backend, activate_body(lic, fp))
    assert renew(backend.services, lic.id) == 2
    hb = backend.client.post("/licenses/heartbeat", json=heartbeat_body(lic, reply, fp)).json()
    assert hb["file_version"] == 2 and "BEGIN TGFLOW LICENSE" in hb["license_file"]
    current = heartbeat_body(lic, reply, fp, file_version=2)
    assert backend.client.post("/licenses/heartbeat", json=current).json()["license_file"] is None


def test_revocation_and_suspension_reach_the_heartbeat(backend: Backend) -> None:
    lic = make_license(backend.services)
    fp = fingerprint()
    reply = _activate(backend, activate_body(lic, fp))
    set_status(backend.services, lic.id, "suspended")
    hb = backend.client.post("/licenses/heartbeat", json=heartbeat_body(lic, reply, fp)).json()
    assert hb["state"] == "suspended"
    set_status(backend.services, lic.id, "revoked")
    hb = backend.client.post("/licenses/heartbeat", json=heartbeat_body(lic, reply, fp)).json()
    assert hb["state"] == "revoked"
    assert _claims(hb["revocation_list"])["revoked"] == [
        {"license_key": lic.key, "file_versions": None}
    ]
    assert_problem(
        backend.client.post("/licenses/activate", json=activate_body(lic, fp)),
        403,
        "license_inactive",
    )


def test_the_revocation_list_is_kept_and_resigned_after_half_its_life(backend: Backend) -> None:
    services = backend.services
    issuer = services.ctx.settings.issuer

    def current() -> str:
        with transaction(services.ctx.write) as session:
            return revocations.current(
                session, services.signer, issuer=issuer, now=backend.clock.now()
            )

    first = current()
    assert current() == first  # stored, not re-signed at every read
    backend.clock.advance(revocations.LIST_LIFETIME.total_seconds() / 2 - 1)
    assert current() == first
    backend.clock.advance(2)
    second = current()
    assert second != first and _claims(second)["iat"] > _claims(first)["iat"]
    lic = make_license(services)
    set_status(services, lic.id, "revoked")
    assert [r["license_key"] for r in _claims(current())["revoked"]] == [lic.key]
    claims = _claims(current())
    assert claims["next_update"] - claims["iat"] == revocations.LIST_LIFETIME.total_seconds()


def test_staff_list_and_deactivate(backend: Backend) -> None:
    lic = make_license(backend.services)
    other = make_license(backend.services)
    fps = [fingerprint() for _ in range(3)]
    replies = []
    for fp in fps:
        replies.append(_activate(backend, activate_body(lic, fp)))
        backend.clock.advance(1)
    _activate(backend, activate_body(other))
    support = new_staff(backend.client, backend.services, backend.clock, Role.SUPPORT)
    engineer = new_staff(backend.client, backend.services, backend.clock, Role.IMPLEMENTATION)
    r = backend.client.get(
        "/staff/activations", params={"license_id": lic.id, "limit": 2}, headers=support.headers
    )
    assert r.status_code == 200, r.text
    page = r.json()
    assert [a["id"] for a in page["activations"]] == [
        replies[2]["activation_id"],
        replies[1]["activation_id"],
    ]
    r = backend.client.get(
        "/staff/activations",
        params={"license_id": lic.id, "limit": 2, "cursor": page["next_cursor"]},
        headers=support.headers,
    )
    assert [a["id"] for a in r.json()["activations"]] == [replies[0]["activation_id"]]
    assert r.json()["next_cursor"] is None
    by_client = backend.client.get(
        "/staff/activations", params={"client_id": other.client_id}, headers=support.headers
    ).json()["activations"]
    assert len(by_client) == 1 and by_client[0]["client_id"] == other.client_id
    target = replies[0]["activation_id"]
    assert_problem(
        backend.client.post(f"/staff/activations/{target}/deactivate", headers=support.headers),
        403,
        "forbidden",
    )
    r = backend.client.post(f"/staff/activations/{target}/deactivate", headers=engineer.headers)
    assert r.status_code == 200 and r.json()["deactivated_reason"] == "manual", r.text
    live = backend.client.get(
        "/staff/activations", params={"license_id": lic.id, "live": True}, headers=support.headers
    ).json()["activations"]
    assert target not in {a["id"] for a in live} and len(live) == 2
    hb = heartbeat_body(lic, replies[0], fps[0])
    assert backend.client.post("/licenses/heartbeat", json=hb).json()["activation_live"] is False
    missing = "0" * 8 + "-0000-0000-0000-" + "0" * 12
    assert_problem(
        backend.client.post(f"/staff/activations/{missing}/deactivate", headers=engineer.headers),
        404,
        "not_found",
    )
    with transaction(backend.services.ctx.read) as session:
        entry = session.scalars(
            select(AuditEntry).where(AuditEntry.action == "activation.deactivate")
        ).one()
    assert entry.actor == f"staff:{engineer.id}"
    assert entry.object == f"license/{lic.id}/activation/{target}"
    for params in ({"cursor": "x"}, {"limit": 0}, {"license_id": "'"}, {"live": "maybe"}):
        r = backend.client.get("/staff/activations", params=params, headers=support.headers)
        assert_problem(r, 422, "validation_error")


def _statements(backend: Backend, path: str, body: dict[str, Any]) -> tuple[Any, list[str]]:
    """The reply to one request and the first word of each SQL statement it ran."""
    statements: list[str] = []

    def count(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        statements.append(statement.split()[0].upper())

    engine = backend.services.ctx.engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        r = backend.client.post(path, json=body)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert r.status_code == 200, r.text
    return r.json(), sorted(statements)


def test_a_heartbeat_is_a_few_statements(backend: Backend) -> None:
    lic = make_license(backend.services)
    fp = fingerprint()
    reply = _activate(backend, activate_body(lic, fp))
    body = heartbeat_body(lic, reply, fp, modules=["ai_forecast", "multi_department"])
    backend.client.post("/licenses/heartbeat", json=body)  # the list is stored by now
    beat, statements = _statements(backend, "/licenses/heartbeat", body)
    assert beat["activation_live"] is True
    # The joined read (with the revocation list's row), the update, the module counters' upsert;
    # on PostgreSQL the update and the upsert are one statement (the update a CTE).
    if backend.services.ctx.engine.dialect.name == "postgresql":
        assert statements == ["SELECT", "WITH"], statements
    else:
        assert statements == ["INSERT", "SELECT", "UPDATE"], statements


def test_an_activation_is_a_few_statements(backend: Backend) -> None:
    lic = make_license(backend.services)
    _activate(backend, activate_body(lic))  # the revocation list is stored by now
    reply, statements = _statements(backend, "/licenses/activate", activate_body(lic))
    assert reply["state"] == "active"
    # The locked license (its contract, file and the revocation list's row as subqueries), the
    # dead ones of the license, the machine's live activation, the new activation, its events
    # (one statement), and the audit log's head and entry (after its lock on PostgreSQL).
    lock = ["SELECT"] if backend.services.ctx.engine.dialect.name == "postgresql" else []
    assert statements == ["INSERT"] * 3 + ["SELECT"] * 4 + lock, statements
