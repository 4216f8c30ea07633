"""A device whose fingerprint changed in one component is recognised, over HTTP, on both databases.

The fingerprints are real v1 fingerprints built by ``agent.fingerprint`` from injected readers,
so a test can change exactly the components it means to (a VM migration, a new disk, an update).
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

import jwt
import pytest

from agent.fingerprint import COMPONENTS, ComponentReader, compute_fingerprint
from tests.conftest import Backend, BackendFactory
from tests.helpers.api import PASSWORD, assert_problem, bearer


class Machine:
    """Three random raw ids, as one machine would have them."""

    def __init__(self) -> None:
        self.raw = {name: secrets.token_hex(16) for name in COMPONENTS}

    def fingerprint(self, **changes: str | None) -> str:
        values = {**self.raw, **changes}
        return compute_fingerprint({name: _reads(value) for name, value in values.items()}).value

    def change(self, *names: str) -> str:
        """Change ``names`` for good (the machine now reports new values) and fingerprint it."""
        for name in names:
            self.raw[name] = secrets.token_hex(16)
        return self.fingerprint()


def _reads(value: str | None) -> ComponentReader:
    return lambda: value


def _device_hash(fp: str) -> str:
    return hashlib.sha256(fp.encode()).hexdigest()


def _login(backend: Backend, email: str, fp: str) -> Any:
    r = backend.client.post(
        "/auth/login", json={"email": email, "password": PASSWORD, "device_fingerprint": fp}
    )
    assert r.status_code == 200, r.text
    return r.json()


def _refresh(backend: Backend, refresh_token: str, fp: str) -> Any:
    return backend.client.post(
        "/auth/refresh", json={"refresh_token": refresh_token, "device_fingerprint": fp}
    )


def _devices(backend: Backend, token: str) -> Any:
    r = backend.client.get("/devices", headers=bearer(token))
    assert r.status_code == 200, r.text
    return r.json()


def _current_device(backend: Backend, token: str) -> str:
    current = [d["id"] for d in _devices(backend, token)["devices"] if d["current"]]
    assert len(current) == 1
    return str(current[0])


def _binding(backend: Backend, token: str) -> Any:
    r = backend.client.get("/license", headers=bearer(token))
    assert r.status_code == 200, r.text
    return r.json()["device_binding"]


def _user(backend: Backend, max_devices: int) -> str:
    plan = f"plan-{secrets.token_hex(3)}"
    backend.services.plans.create(plan, monthly_quota=10, max_devices=max_devices, features=[])
    email = f"dev-{secrets.token_hex(4)}@example.com"
    backend.services.auth.create_user(email, PASSWORD, plan)
    return email


@pytest.mark.parametrize("changed", COMPONENTS)
def test_one_component_changed_is_the_same_device(
    make_backend: BackendFactory, changed: str
) -> None:
    backend = make_backend()
    email = _user(backend, max_devices=1)
    machine = Machine()
    first = _login(backend, email, before := machine.fingerprint())
    device_id = _devices(backend, first["token"])["devices"][0]["id"]

    # With max_devices=1 a new device would be refused: this login is the same device.
    second = _login(backend, email, after := machine.change(changed))
    assert after != before
    devices = _devices(backend, second["token"])
    assert [d["id"] for d in devices["devices"]] == [device_id]
    assert devices["devices"][0]["current"]
    binding = _binding(backend, second["token"])
    assert binding["devices_used"] == 1
    # The new fingerprint is recorded: the lease and the token name it now.
    assert binding["fingerprint"] == _device_hash(after)
    assert jwt.decode(second["token"], options={"verify_signature": False})["device"] == (
        _device_hash(after)
    )
    lease = jwt.decode(
        backend.client.get("/license", headers=bearer(second["token"])).json()["lease"],
        options={"verify_signature": False},
    )
    assert lease["device"] == _device_hash(after)
    # The token issued before the change is still good until it expires: same session, device,
    # and it answers with the new fingerprint too (the session it cached was told of the change).
    earlier = _binding(backend, first["token"])
    assert earlier["devices_used"] == 1
    assert earlier["fingerprint"] == _device_hash(after)


def test_two_components_changed_is_a_new_device(make_backend: BackendFactory) -> None:
    backend = make_backend()
    solo = _user(backend, max_devices=1)
    machine = Machine()
    _login(backend, solo, machine.fingerprint())
    other = machine.fingerprint(machine_id="a" + "1" * 31, volume_id="b" + "2" * 31)
    r = backend.client.post(
        "/auth/login", json={"email": solo, "password": PASSWORD, "device_fingerprint": other}
    )
    assert_problem(r, 403, "device_limit")

    duo = _user(backend, max_devices=2)
    first = _login(backend, duo, machine.fingerprint())
    second = _login(backend, duo, other)
    devices = _devices(backend, second["token"])["devices"]
    assert len(devices) == 2
    assert _binding(backend, first["token"])["devices_used"] == 2


def test_missing_component_on_one_side_is_the_same_device(make_backend: BackendFactory) -> None:
    # product_uuid is root-only on Linux: one run reads it, the next does not.
    backend = make_backend()
    email = _user(backend, max_devices=1)
    machine = Machine()
    _login(backend, email, machine.fingerprint())
    without = machine.fingerprint(hardware_id=None)
    login = _login(backend, email, without)
    assert _binding(backend, login["token"]) == {
        "fingerprint": _device_hash(without),
        "bound": True,
        "devices_used": 1,
        "devices_max": 1,
    }


def test_changes_one_at_a_time_follow_the_device(make_backend: BackendFactory) -> None:
    # Each login records the new value, so the next change is compared with it, not the first.
    backend = make_backend()
    email = _user(backend, max_devices=1)
    machine = Machine()
    original = machine.fingerprint()
    first = _login(backend, email, original)
    device_id = _devices(backend, first["token"])["devices"][0]["id"]
    for name in COMPONENTS:
        login = _login(backend, email, machine.change(name))
        assert [d["id"] for d in _devices(backend, login["token"])["devices"]] == [device_id]
    # Every value changed since the first login: that old fingerprint is another device now.
    r = backend.client.post(
        "/auth/login",
        json={"email": email, "password": PASSWORD, "device_fingerprint": original},
    )
    assert_problem(r, 403, "device_limit")


def test_a_changed_fingerprint_goes_to_its_own_device(make_backend: BackendFactory) -> None:
    backend = make_backend()
    email = _user(backend, max_devices=2)
    laptop, desktop = Machine(), Machine()
    on_laptop = _login(backend, email, laptop.fingerprint())
    on_desktop = _login(backend, email, desktop.fingerprint())
    laptop_id = _current_device(backend, on_laptop["token"])
    desktop_id = _current_device(backend, on_desktop["token"])
    assert laptop_id != desktop_id
    again = _login(backend, email, desktop.change("volume_id"))
    devices = _devices(backend, again["token"])["devices"]
    assert len(devices) == 2
    assert _current_device(backend, again["token"]) == desktop_id


def test_when_two_devices_match_the_one_seen_last_wins(make_backend: BackendFactory) -> None:
    # Two devices that share one value (a cloned VM keeps the machine id), and a fingerprint
    # that agrees with each on two components: the choice is deterministic.
    backend = make_backend()
    email = _user(backend, max_devices=2)
    machine = Machine()
    first = _login(backend, email, machine.fingerprint())
    clone_raw = {"hardware_id": "e" + "5" * 31, "volume_id": "f" + "6" * 31}
    backend.clock.advance(60)
    second = _login(backend, email, machine.fingerprint(**clone_raw))
    clone_id = _current_device(backend, second["token"])
    assert _current_device(backend, first["token"]) != clone_id
    backend.clock.advance(60)
    ambiguous = machine.fingerprint(volume_id=clone_raw["volume_id"])
    again = _login(backend, email, ambiguous)
    assert _current_device(backend, again["token"]) == clone_id
    assert len(_devices(backend, again["token"])["devices"]) == 2


def test_refresh_with_one_component_changed_succeeds(make_backend: BackendFactory) -> None:
    backend = make_backend()
    email = _user(backend, max_devices=1)
    machine = Machine()
    login = _login(backend, email, machine.fingerprint())
    after = machine.change("machine_id")
    r = _refresh(backend, login["refresh_token"], after)
    assert r.status_code == 200, r.text
    refreshed = r.json()
    binding = _binding(backend, refreshed["token"])
    assert binding["fingerprint"] == _device_hash(after)
    assert binding["devices_used"] == 1
    # The rotated token goes on working with the recorded fingerprint.
    assert _refresh(backend, refreshed["refresh_token"], after).status_code == 200


def test_refresh_with_two_components_changed_is_refused_without_burning_the_token(
    make_backend: BackendFactory,
) -> None:
    backend = make_backend()
    email = _user(backend, max_devices=1)
    machine = Machine()
    login = _login(backend, email, fp := machine.fingerprint())
    other = machine.fingerprint(machine_id="c" + "3" * 31, hardware_id="d" + "4" * 31)
    assert_problem(_refresh(backend, login["refresh_token"], other), 401, "token_invalid")
    r = _refresh(backend, login["refresh_token"], fp)
    assert r.status_code == 200, r.text
    assert _binding(backend, r.json()["token"])["fingerprint"] == _device_hash(fp)


def test_opaque_fingerprints_still_match_only_exactly(make_backend: BackendFactory) -> None:
    backend = make_backend()
    email = _user(backend, max_devices=1)
    legacy = "fp-" + secrets.token_hex(16)
    _login(backend, email, legacy)
    near = legacy[:-1] + ("0" if legacy[-1] != "0" else "1")
    r = backend.client.post(
        "/auth/login", json={"email": email, "password": PASSWORD, "device_fingerprint": near}
    )
    assert_problem(r, 403, "device_limit")
    # An opaque fingerprint is not a v1 one either, however it is changed.
    r = backend.client.post(
        "/auth/login",
        json={"email": email, "password": PASSWORD, "device_fingerprint": Machine().fingerprint()},
    )
    assert_problem(r, 403, "device_limit")
