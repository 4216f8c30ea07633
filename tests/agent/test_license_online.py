"""Online activation and heartbeats (agent.licensing.OnlineActivation) against a real backend
on an ephemeral port: the machine activation is verified, a renewal and a revocation reach the
installation at its next heartbeat, forged or tampered replies are refused, and a lost server
leaves the offline rules in charge."""

from __future__ import annotations

import base64
import json
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from agent.clock import FakeClock
from agent.errors import (
    ActivationRequired,
    DeviceLimit,
    LicenseFileExpired,
    LicenseInactive,
    LicenseRevoked,
    NotFound,
    TokenInvalid,
    UntrustedKey,
)
from agent.licensing import DocumentVerifier, LicenseFileStore, OnlineActivation
from agent.protocol import MACHINE_ACTIVATION_TYP
from server_stub.signing import sign_jws
from tests.helpers.activation import (
    PortalLicense,
    fingerprint,
    make_license,
    renew,
    set_status,
)
from tests.helpers.agent_backend import AgentBackend, closed_port_url
from tests.helpers.license_files import installation, vendor

Tamper = Callable[[dict[str, object]], None]


class _Tampering(httpx.HTTPTransport):
    """Forwards to the real server and lets a test rewrite the activation reply's JSON."""

    def __init__(self, tamper: Tamper | None = None) -> None:
        super().__init__()
        self.tamper = tamper

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        if self.tamper is None or not request.url.path.endswith("/activate"):
            return response
        response.read()
        body = json.loads(response.content)
        self.tamper(body)
        return httpx.Response(response.status_code, json=body)


class Site:
    def __init__(self, backend: AgentBackend, data_dir: Path, fp: str | None = None) -> None:
        pin = backend.signing_key("license").pin
        self.clock = FakeClock(backend.clock.now())
        self.install = installation(data_dir, [pin], clock=self.clock)
        self.store = LicenseFileStore(self.install.verifier, data_dir)
        self.transport = _Tampering()
        self.http = httpx.Client(transport=self.transport, timeout=30)
        self.fingerprint = fp or fingerprint()
        self.online = OnlineActivation(
            backend.url,
            self.store,
            DocumentVerifier(self.install.keys),
            fingerprint=self.fingerprint,
            server_id="srv-1",
            http=self.http,
            clock=self.clock,
        )


@pytest.fixture
def make_site(backend: AgentBackend, tmp_path: Path) -> Iterator[Callable[..., Site]]:
    sites: list[Site] = []

    def make(name: str = "site", fp: str | None = None) -> Site:
        site = Site(backend, tmp_path / name, fp)
        sites.append(site)
        return site

    yield make
    for site in sites:
        site.http.close()


def test_online_activation_keeps_the_file_and_the_activation(
    backend: AgentBackend, make_site: Callable[..., Site]
) -> None:
    lic = make_license(backend.services)
    site = make_site()
    activated = site.online.activate(lic.key, modules=["ai_forecast"])
    assert activated.license_key == lic.key and activated.file_version == 1
    assert site.online.check().license_key == lic.key
    assert stat.S_IMODE(os.stat(site.online.path).st_mode) == 0o600
    kept = json.loads(site.online.path.read_text())
    assert kept["license_key"] == lic.key and kept["file_version"] == 1
    outcome = site.online.heartbeat(modules=["ai_forecast"])
    assert outcome.reached and outcome.state == "active" and not outcome.must_reactivate
    assert outcome.new_file_version is None and outcome.next_heartbeat_s == 300


def test_a_renewal_is_picked_up_at_the_next_heartbeat(
    backend: AgentBackend, make_site: Callable[..., Site]
) -> None:
    lic = make_license(backend.services)
    site = make_site()
    site.online.activate(lic.key)
    renew(backend.services, lic.id)
    outcome = site.online.heartbeat()
    assert outcome.new_file_version == 2
    assert site.online.check().file_version == 2
    assert site.online.heartbeat().new_file_version is None


def test_revocation_reaches_an_online_installation(
    backend: AgentBackend, make_site: Callable[..., Site]
) -> None:
    lic = make_license(backend.services)
    site = make_site()
    site.online.activate(lic.key)
    backend.clock.advance(60)  # a list replaces the kept one only when issued later
    site.clock.advance(60)
    set_status(backend.services, lic.id, "revoked")
    assert site.online.heartbeat().state == "revoked"
    with pytest.raises(LicenseRevoked):
        site.online.check()
    # Also through the kept revocation list, for the store on its own (offline).
    with pytest.raises(LicenseRevoked):
        site.store.check()


def test_suspension_is_refused_until_lifted(
    backend: AgentBackend, make_site: Callable[..., Site]
) -> None:
    lic = make_license(backend.services)
    site = make_site()
    site.online.activate(lic.key)
    set_status(backend.services, lic.id, "suspended")
    site.online.heartbeat()
    with pytest.raises(LicenseInactive):
        site.online.check()
    # Persisted: a restart (a new object on the same data dir) still refuses.
    restarted = Site(backend, site.store.path.parent, site.fingerprint)
    with pytest.raises(LicenseInactive):
        restarted.online.check()
    restarted.http.close()
    set_status(backend.services, lic.id, "active")
    assert site.online.heartbeat().state == "active"
    assert site.online.check().license_key == lic.key


def test_a_freed_activation_must_activate_again(
    backend: AgentBackend, make_site: Callable[..., Site]
) -> None:
    lic = make_license(backend.services, max_activations=1)
    first = make_site("first")
    first.online.activate(lic.key)
    second = make_site("second")
    with pytest.raises(DeviceLimit):
        second.online.activate(lic.key)
    replacing = json.loads(first.online.path.read_text())["activation_id"]
    second.online.activate(lic.key, replace_activation_id=replacing)
    assert first.online.heartbeat().must_reactivate
    with pytest.raises(ActivationRequired):
        first.online.check()
    assert second.online.check().license_key == lic.key


def test_errors_of_the_server_are_typed(
    backend: AgentBackend, make_site: Callable[..., Site]
) -> None:
    site = make_site()
    with pytest.raises(NotFound):
        site.online.activate("TGF-" + "0" * 32)
    with pytest.raises(LicenseInactive):
        site.online.activate(make_license(backend.services, status="suspended").key)
    with pytest.raises(ActivationRequired):
        site.online.heartbeat()


def test_a_lost_server_leaves_the_offline_rules_in_charge(
    backend: AgentBackend, make_site: Callable[..., Site]
) -> None:
    lic = make_license(backend.services)
    site = make_site()
    site.online.activate(lic.key)
    site.online._base = closed_port_url()
    assert site.online.heartbeat().reached is False
    assert site.online.check().license_key == lic.key
    # ... until the file's own end (validity + grace), as offline.
    site.clock.advance((365 + 14) * 86400 + 120)
    with pytest.raises(LicenseFileExpired):
        site.online.check()


def _forge(backend: AgentBackend, lic: PortalLicense, tmp_path: Path) -> dict[str, Tamper]:
    other = vendor(tmp_path / "other-vendor")

    def resign(typ: str, signer: object, **claims: object) -> Tamper:
        def tamper(body: dict[str, object]) -> None:
            part = str(body["activation"]).split(".")[1]
            payload = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
            payload.update(claims)
            body["activation"] = sign_jws(signer, typ, json.dumps(payload).encode())  # type: ignore[arg-type]

        return tamper

    server = backend.services.signer
    return {
        "wrong key": resign(MACHINE_ACTIVATION_TYP, other.signer),
        "wrong typ": resign("license-file", server),
        "other fingerprint": resign(MACHINE_ACTIVATION_TYP, server, fingerprint=fingerprint()),
        "other license": resign(MACHINE_ACTIVATION_TYP, server, license_key="TGF-" + "1" * 32),
    }


@pytest.mark.parametrize(
    "forgery", ["wrong key", "wrong typ", "other fingerprint", "other license", "tampered"]
)
def test_forged_activation_replies_are_refused(
    backend: AgentBackend, make_site: Callable[..., Site], tmp_path: Path, forgery: str
) -> None:
    lic = make_license(backend.services)
    site = make_site()
    if forgery == "tampered":

        def flip(body: dict[str, object]) -> None:
            head, payload, sig = str(body["activation"]).split(".")
            body["activation"] = f"{head}.{payload}.{sig[:-4]}AAAA"

        site.transport.tamper = flip
    else:
        site.transport.tamper = _forge(backend, lic, tmp_path)[forgery]
    with pytest.raises((TokenInvalid, UntrustedKey)):
        site.online.activate(lic.key)
    assert not site.online.path.exists() and not site.store.path.exists()
