"""The built-in activation limits (docs/licensing.md, "Limits") over HTTP on SQLite and
PostgreSQL: live activations, per hour, checkouts per hour, IP ranges, replacement in one call,
dead activations freed, and the refusal record with its once-an-hour notification."""

from __future__ import annotations

import threading
from typing import Any

import httpx
from sqlalchemy import select

from server_stub.db import transaction
from server_stub.portal_models import (
    Activation,
    ActivationEvent,
    Notification,
    PortalSetting,
)
from tests.helpers.activation import (
    PortalLicense,
    activate_body,
    fingerprint,
    heartbeat_body,
    make_license,
    renew,
)
from tests.helpers.api import assert_problem
from tests.helpers.backend import Backend, BackendFactory


def _activate(
    backend: Backend, lic: PortalLicense, fp: str | None = None, **fields: Any
) -> httpx.Response:
    return backend.client.post("/licenses/activate", json=activate_body(lic, fp, **fields))


def _events(backend: Backend, lic: PortalLicense, kind: str) -> list[ActivationEvent]:
    with transaction(backend.services.ctx.read) as session:
        return list(
            session.scalars(
                select(ActivationEvent).where(
                    ActivationEvent.license_id == lic.id, ActivationEvent.kind == kind
                )
            )
        )


def _live(backend: Backend, lic: PortalLicense) -> list[Activation]:
    with transaction(backend.services.ctx.read) as session:
        return list(
            session.scalars(
                select(Activation).where(
                    Activation.license_id == lic.id, Activation.deactivated_at.is_(None)
                )
            )
        )


def _notify_by_webhook(backend: Backend) -> None:
    with transaction(backend.services.ctx.write) as session:
        session.add(
            PortalSetting(
                key="notifications",
                value={"channels": ["webhook"]},
                updated_by="test",
                updated_at=backend.clock.now(),
            )
        )


def test_max_activations_counts_live_machines(backend: Backend) -> None:
    _notify_by_webhook(backend)
    lic = make_license(backend.services, max_activations=2)
    for _ in range(2):
        assert _activate(backend, lic).status_code == 200
    for _ in range(2):
        problem = assert_problem(_activate(backend, lic), 403, "device_limit")
        assert "2 live activations" in problem["detail"]
    refused = _events(backend, lic, "refused")
    assert len(refused) == 2 and refused[0].detail is not None
    assert refused[0].detail.startswith("device_limit")
    with transaction(backend.services.ctx.read) as session:
        notes = list(session.scalars(select(Notification).where(Notification.license_id == lic.id)))
    # Announced once an hour, however many refusals.
    assert [(n.kind, n.channel) for n in notes] == [("limit_exceeded", "webhook")]
    assert lic.key not in str(notes[0].payload)
    backend.clock.advance(3600)
    # (the machines are dead by now: heartbeat them to keep them live)
    with transaction(backend.services.ctx.write) as session:
        for row in session.scalars(select(Activation).where(Activation.license_id == lic.id)):
            row.last_heartbeat_at = backend.clock.now()
    assert_problem(_activate(backend, lic), 403, "device_limit")
    with transaction(backend.services.ctx.read) as session:
        count = len(
            list(session.scalars(select(Notification).where(Notification.license_id == lic.id)))
        )
    assert count == 2
    assert len(_live(backend, lic)) == 2


def test_activations_per_hour_with_retry_after(backend: Backend) -> None:
    lic = make_license(backend.services, activations_per_hour=2)
    fp = fingerprint()
    assert _activate(backend, lic, fp).status_code == 200
    backend.clock.advance(200)
    assert _activate(backend, lic).status_code == 200
    backend.clock.advance(60)
    r = _activate(backend, lic)
    assert_problem(r, 429, "rate_limited")
    assert r.headers["Retry-After"] == str(3600 - 260)
    # The same machine again is no new activation: not limited by this one.
    assert _activate(backend, lic, fp).status_code == 200
    backend.clock.advance(3600 - 260 + 1)
    assert _activate(backend, lic).status_code == 200


def test_checkouts_per_hour_count_every_file_delivery(backend: Backend) -> None:
    lic = make_license(backend.services, checkouts_per_hour=3)
    fp = fingerprint()
    first = _activate(backend, lic, fp).json()
    assert _activate(backend, lic, fp).status_code == 200
    renew(backend.services, lic.id)
    hb = heartbeat_body(lic, first, fp)
    delivered = backend.client.post("/licenses/heartbeat", json=hb).json()
    assert delivered["license_file"] is not None  # the third delivery
    r = _activate(backend, lic, fp)
    assert_problem(r, 429, "rate_limited")
    assert int(r.headers["Retry-After"]) == 3600
    # A heartbeat over the limit keeps the machine alive and withholds the file for later.
    renew(backend.services, lic.id)
    withheld = backend.client.post("/licenses/heartbeat", json=hb | {"file_version": 2}).json()
    assert withheld["activation_live"] is True and withheld["license_file"] is None
    assert withheld["file_version"] == 3
    assert len(_events(backend, lic, "checkout")) == 3
    assert len(_events(backend, lic, "refused")) == 2
    files = []
    for _ in range(8):  # the machine stays live, and gets the file once the hour is over
        backend.clock.advance(450)
        beat = backend.client.post("/licenses/heartbeat", json=hb | {"file_version": 2}).json()
        files.append(beat["license_file"] is not None)
    assert files == [False] * 7 + [True]


def test_ip_ranges(make_backend: BackendFactory) -> None:
    backend = make_backend(trust_forwarded_for=True)
    lic = make_license(backend.services, ip_ranges=["10.0.0.0/8", "2001:db8::/32"])
    assert_problem(_activate(backend, lic), 403, "forbidden")  # from 127.0.0.1
    inside = {"X-Forwarded-For": "10.1.2.3"}
    body = activate_body(lic)
    r = backend.client.post("/licenses/activate", json=body, headers=inside)
    assert r.status_code == 200, r.text
    v6 = backend.client.post(
        "/licenses/activate", json=activate_body(lic), headers={"X-Forwarded-For": "2001:db8::1"}
    )
    assert v6.status_code == 200, v6.text
    hb = heartbeat_body(lic, r.json(), body["fingerprint"])
    assert backend.client.post("/licenses/heartbeat", json=hb, headers=inside).status_code == 200
    outside = {"X-Forwarded-For": "192.0.2.1"}
    assert_problem(
        backend.client.post("/licenses/heartbeat", json=hb, headers=outside), 403, "forbidden"
    )
    garbage = {"X-Forwarded-For": "not an address" * 10}
    assert_problem(
        backend.client.post("/licenses/activate", json=activate_body(lic), headers=garbage),
        403,
        "forbidden",
    )
    with transaction(backend.services.ctx.read) as session:
        assert session.get_one(Activation, r.json()["activation_id"]).ip == "10.1.2.3"
    assert len(_events(backend, lic, "refused")) == 3


def test_replacement_in_one_call(backend: Backend) -> None:
    lic = make_license(backend.services, max_activations=1)
    old_fp = fingerprint()
    old = _activate(backend, lic, old_fp).json()
    assert_problem(_activate(backend, lic), 403, "device_limit")
    new_fp = fingerprint()
    r = _activate(backend, lic, new_fp, replace_activation_id=old["activation_id"])
    assert r.status_code == 200, r.text
    live = _live(backend, lic)
    assert [a.fingerprint for a in live] == [new_fp]
    with transaction(backend.services.ctx.read) as session:
        assert session.get_one(Activation, old["activation_id"]).deactivated_reason == "replaced"
    hb = backend.client.post("/licenses/heartbeat", json=heartbeat_body(lic, old, old_fp))
    assert hb.json()["activation_live"] is False
    assert len(_events(backend, lic, "replace")) == 1
    # Replacing one already gone (or unknown) is refused, and takes no slot.
    again = _activate(backend, lic, replace_activation_id=old["activation_id"])
    assert_problem(again, 404, "not_found")


def test_dead_activations_free_their_slot(backend: Backend) -> None:
    lic = make_license(backend.services, max_activations=1, heartbeat_window_s=120)
    fp = fingerprint()
    first = _activate(backend, lic, fp).json()
    backend.clock.advance(100)
    hb = heartbeat_body(lic, first, fp)
    assert backend.client.post("/licenses/heartbeat", json=hb).json()["activation_live"] is True
    backend.clock.advance(100)
    assert_problem(_activate(backend, lic), 403, "device_limit")  # heard from 100 s ago
    backend.clock.advance(21)
    second = _activate(backend, lic)
    assert second.status_code == 200, second.text
    with transaction(backend.services.ctx.read) as session:
        assert session.get_one(Activation, first["activation_id"]).deactivated_reason == "dead"
    assert backend.client.post("/licenses/heartbeat", json=hb).json()["activation_live"] is False


def test_the_sweeper_frees_dead_activations(backend: Backend) -> None:
    short = make_license(backend.services, heartbeat_window_s=60)
    default = make_license(backend.services)
    fp = fingerprint()
    kept = _activate(backend, short, fp).json()
    _activate(backend, default)
    backend.clock.advance(61)
    assert backend.services.activations.free_dead() == 1
    assert _live(backend, short) == [] and len(_live(backend, default)) == 1
    backend.clock.advance(600)
    assert backend.services.activations.free_dead() == 1
    assert backend.services.activations.free_dead() == 0
    hb = heartbeat_body(short, kept, fp)
    assert backend.client.post("/licenses/heartbeat", json=hb).json()["activation_live"] is False


def test_concurrent_activations_never_exceed_the_limit(backend: Backend) -> None:
    lic = make_license(backend.services, max_activations=3)
    results: list[int] = []
    lock = threading.Lock()
    start = threading.Barrier(10)

    def activate() -> None:
        with httpx.Client(base_url=backend.url, timeout=60) as client:
            start.wait()
            r = client.post("/licenses/activate", json=activate_body(lic))
        with lock:
            results.append(r.status_code)

    threads = [threading.Thread(target=activate) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert sorted(results) == [200] * 3 + [403] * 7
    assert len(_live(backend, lic)) == 3
