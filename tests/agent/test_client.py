"""AsyncLicenseClient against the real backend: sign-in, lease, refresh, retries, errors, offline.

Faults are injected by a transport wrapped around the real one: it fails (or loses the answer of)
chosen requests and passes everything else through, so the real server answers every retry. The
backoff sleep is injected and only recorded; nothing here waits for real.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import keyring.backends.fail
import pytest

from agent.client import AsyncLicenseClient, InsecureApiUrl, LicenseClient, RetryPolicy
from agent.clock import FakeClock
from agent.errors import (
    DeviceLimit,
    InvalidCredentials,
    LicenseInactive,
    NoOfflineLease,
    Offline,
    QuotaExceeded,
    TokenExpired,
    UnexpectedResponse,
)
from agent.journal import UsageJournal
from agent.protocol import ACCESS_TOKEN_TTL_SECONDS, DEFAULT_LEASE_TTL_SECONDS
from agent.secrets import RefreshTokenStore
from agent.usage_http import HttpUsageBackend
from tests.helpers.agent_backend import AgentBackend, running_backend
from tests.helpers.api import PASSWORD, bearer, fingerprint

_T = TypeVar("_T")


def run(coro: Coroutine[Any, Any, _T]) -> _T:
    return asyncio.run(coro)


class RecordingStore(RefreshTokenStore):
    """The file-fallback store, logging each save into a shared event list."""

    def __init__(self, data_dir: Path, events: list[tuple[str, str]]) -> None:
        super().__init__(data_dir, backend=keyring.backends.fail.Keyring())
        self.events = events

    def save(self, token: str) -> None:
        super().save(token)
        self.events.append(("saved", token))


@dataclass
class FaultTransport(httpx.AsyncBaseTransport):
    """Passes requests to the real transport, except the faults queued for a path.

    A fault is ``"connect"`` (refused before sending), ``"lost"`` (sent, answered by the server,
    answer dropped), or an HTTP status to answer instead (``503``, ``(429, "7")`` with a
    ``Retry-After``).
    """

    events: list[tuple[str, str]]
    faults: dict[str, list[Any]] = field(default_factory=dict)
    inner: httpx.AsyncBaseTransport = field(default_factory=httpx.AsyncHTTPTransport)
    bodies: dict[str, list[bytes]] = field(default_factory=dict)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        body = await request.aread()
        self.bodies.setdefault(path, []).append(body)
        self.events.append(("request", path + " " + request.headers.get("Authorization", "")))
        queue = self.faults.get(path) or []
        fault = queue.pop(0) if queue else None
        if fault == "connect":
            raise httpx.ConnectError("injected: connection refused", request=request)
        if fault is None or fault == "lost":
            response = await self.inner.handle_async_request(request)
            if fault == "lost":
                await response.aread()
                await response.aclose()
                raise httpx.ReadError("injected: answer lost", request=request)
            return response
        status, retry_after = fault if isinstance(fault, tuple) else (fault, None)
        headers = {"Content-Type": "application/problem+json"}
        if retry_after is not None:
            headers["Retry-After"] = retry_after
        code = "rate_limited" if status == 429 else "service_unavailable"
        problem = {"title": "injected", "status": status, "detail": "injected", "code": code}
        return httpx.Response(status, headers=headers, content=json.dumps(problem).encode())

    async def aclose(self) -> None:
        await self.inner.aclose()


@dataclass
class Harness:
    backend: AgentBackend
    tmp_path: Path
    clock: FakeClock
    pins: str
    sleeps: list[float] = field(default_factory=list)
    events: list[tuple[str, str]] = field(default_factory=list)

    async def _sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)

    def client(
        self, *, fp: str | None = None, name: str = "a", url: str | None = None
    ) -> tuple[AsyncLicenseClient, FaultTransport, RecordingStore]:
        data_dir = self.tmp_path / name
        store = RecordingStore(data_dir, self.events)
        transport = FaultTransport(self.events)
        client = AsyncLicenseClient(
            url or self.backend.url,
            fingerprint=fp or fingerprint(),
            pins=self.pins,
            data_dir=data_dir,
            clock=self.clock,
            secrets=store,
            sleep=self._sleep,
            rand=lambda: 0.0,
            transport=transport,
            observe_server_date=False,  # uvicorn's Date is the real time, not the FakeClock's
        )
        return client, transport, store

    def advance(self, seconds: float) -> None:
        """Move the server's and the agent's clocks together."""
        self.backend.clock.advance(seconds)
        self.clock.advance(seconds)

    def quota(self, token: str) -> dict[str, Any]:
        r = self.backend.client.get("/license", headers=bearer(token))
        assert r.status_code == 200, r.text
        quota: dict[str, Any] = r.json()["quota"]
        return quota


def make_harness(backend: AgentBackend, tmp_path: Path) -> Harness:
    pins = f"{backend.signing_key('auth').pin},{backend.signing_key('license').pin}"
    return Harness(backend, tmp_path, FakeClock(backend.clock.now()), pins)


@pytest.fixture
def h(backend: AgentBackend, tmp_path: Path) -> Harness:
    return make_harness(backend, tmp_path)


def email() -> str:
    return f"client-{secrets.token_hex(4)}@example.com"


def user_on_plan(h: Harness, *, quota: int = 10, max_devices: int = 2) -> str:
    plan = f"plan-{secrets.token_hex(3)}"
    h.backend.services.plans.create(plan, monthly_quota=quota, max_devices=max_devices, features=[])
    address = email()
    h.backend.services.auth.create_user(address, PASSWORD, plan)
    return address


# --- sign-in, lease ----------------------------------------------------------------------------


def test_register_login_license_round_trip(h: Harness) -> None:
    address = email()

    async def scenario() -> None:
        client, _, store = h.client()
        async with client:
            tokens = await client.register(address, PASSWORD)
            assert store.load() == tokens.refresh_token
            assert client.access_token == tokens.token
            lic = await client.license()
            assert lic.info.status == "active"
            assert lic.lease.device == client.device
            assert client.leases.lease == lic.info.lease  # saved for offline use
            assert client.leases.last_seen is not None
            assert client.offline_license().expires_at == lic.lease.expires_at
            devices = await client.devices()
            assert [d.current for d in devices.devices] == [True]
        # A second program (same device) logs in with the password.
        again, _, _ = h.client(fp=client.fingerprint, name="b")
        async with again:
            await again.login(address, PASSWORD)
            assert (await again.license()).info.device_binding.devices_used == 1
            await again.logout()
            assert again.access_token is None and again.secrets.load() is None
            with pytest.raises(NoOfflineLease):
                again.offline_license()

    run(scenario())


def test_sync_facade(h: Harness) -> None:
    with LicenseClient(
        h.backend.url,
        fingerprint=fingerprint(),
        pins=h.pins,
        data_dir=h.tmp_path / "sync",
        clock=h.clock,
        secrets=RefreshTokenStore(h.tmp_path / "sync", backend=keyring.backends.fail.Keyring()),
        observe_server_date=False,
    ) as client:
        client.register(email(), PASSWORD)
        assert client.license().info.quota.limit > 0
        reservation = client.reserve(2, "sync-facade-0001")
        assert client.commit(reservation.reservation_id, 1).used == 1


# --- refresh -----------------------------------------------------------------------------------


def test_expired_access_token_is_refreshed_and_new_refresh_token_persisted_first(
    h: Harness,
) -> None:
    async def scenario() -> None:
        client, transport, store = h.client()
        async with client:
            first = await client.register(email(), PASSWORD)
            h.advance(ACCESS_TOKEN_TTL_SECONDS + 60)
            h.events.clear()
            lic = await client.license()
            assert lic.info.status == "active"
            new_refresh = store.load()
            assert new_refresh is not None and new_refresh != first.refresh_token
            assert client.access_token != first.token
            # GET /license (refused: expired), refresh, saved, then GET /license with the new token.
            kinds = [(kind, value.split(" ")[0]) for kind, value in h.events]
            assert kinds[:3] == [
                ("request", "/license"),
                ("request", "/auth/refresh"),
                ("saved", new_refresh),
            ]
            assert kinds[-1] == ("request", "/license")
            assert h.events[-1][1].endswith(str(client.access_token))
            refresh_body = json.loads(transport.bodies["/auth/refresh"][0])
            assert refresh_body["refresh_token"] == first.refresh_token
            # Usage calls refresh too, and the old refresh token is never sent again.
            h.advance(ACCESS_TOKEN_TTL_SECONDS + 60)
            reservation = await client.reserve(1, "refresh-usage-0001")
            assert reservation.messages == 1
            second_body = json.loads(transport.bodies["/auth/refresh"][1])
            assert second_body["refresh_token"] == new_refresh

    run(scenario())


def test_a_routine_token_refresh_is_logged_at_debug_only(
    h: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    # The desktop's session log (the Logs tab) takes INFO and above: a refresh every quarter
    # hour is not a line for the user.
    async def scenario() -> None:
        client, _, _ = h.client()
        async with client:
            await client.register(email(), PASSWORD)
            h.advance(ACCESS_TOKEN_TTL_SECONDS + 60)
            with caplog.at_level(logging.DEBUG, logger="tgflow.agent"):
                await client.license()

    run(scenario())
    refreshed = [r for r in caplog.records if r.getMessage() == "access token refreshed"]
    assert [r.levelno for r in refreshed] == [logging.DEBUG]


# --- retries -----------------------------------------------------------------------------------


def test_429_retry_after_is_honoured(h: Harness) -> None:
    async def scenario() -> None:
        client, transport, _ = h.client()
        async with client:
            await client.register(email(), PASSWORD)
            transport.faults["/license"] = [(429, "7")]
            await client.license()
            assert h.sleeps == [7.0]
            assert len(transport.bodies["/license"]) == 2

    run(scenario())


def test_transient_failures_resend_the_same_correlation_id_and_hold_once(h: Harness) -> None:
    async def scenario() -> None:
        client, transport, _ = h.client()
        async with client:
            await client.register(email(), PASSWORD)
            token = client.access_token
            assert token is not None
            before = h.quota(token)
            transport.faults["/usage/reserve"] = ["connect", 503, "lost"]
            reservation = await client.reserve(3, "retry-corr-0001")
            bodies = transport.bodies["/usage/reserve"]
            assert len(bodies) == 4 and len(set(bodies)) == 1
            assert json.loads(bodies[0])["correlation_id"] == "retry-corr-0001"
            # Exponential backoff (jitter pinned to its lower bound by rand=0).
            policy = RetryPolicy()
            assert h.sleeps == [policy.backoff(n, 0.0) for n in range(3)]
            assert h.sleeps[0] < h.sleeps[1] < h.sleeps[2]
            assert h.quota(token)["held"] == before["held"] + 3  # held once, not twice
            transport.faults["/usage/commit"] = ["lost"]
            settled = await client.commit(reservation.reservation_id, 2)
            assert settled.used == 2
            after = h.quota(token)
            assert after["used"] == before["used"] + 2 and after["held"] == before["held"]

    run(scenario())


def test_client_is_a_usage_backend_for_the_journal(h: Harness) -> None:
    async def scenario() -> None:
        client, transport, _ = h.client()
        async with client:
            await client.register(email(), PASSWORD)
            with UsageJournal(h.tmp_path / "journal.db", clock=h.clock) as journal:
                transport.faults["/usage/reserve"] = [503]
                batch = await journal.reserve(client, 2)
                journal.record_sent(batch.correlation_id, "alice")
                outcome = await journal.finish(client, batch.correlation_id)
                assert outcome.used == 1 and outcome.sent == 1

    run(scenario())


def test_connection_refused_after_retries_is_offline(h: Harness) -> None:
    async def scenario() -> None:
        client, transport, _ = h.client()
        async with client:
            await client.register(email(), PASSWORD)
            transport.faults["/license"] = ["connect"] * RetryPolicy().max_attempts
            with pytest.raises(Offline):
                await client.license()
            assert len(h.sleeps) == RetryPolicy().max_attempts - 1

    run(scenario())


def test_login_is_not_resent_after_its_answer_was_lost(h: Harness) -> None:
    async def scenario() -> None:
        client, transport, _ = h.client()
        async with client:
            transport.faults["/auth/register"] = ["lost"]
            with pytest.raises(Offline):
                await client.register(email(), PASSWORD)
            assert len(transport.bodies["/auth/register"]) == 1

    run(scenario())


# --- URL and typed errors ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "url", ["http://example.com", "http://10.0.0.5:8000", "http://[2001:db8::1]/", "ftp://x"]
)
def test_plain_http_to_a_remote_host_is_refused(h: Harness, url: str) -> None:
    with pytest.raises(InsecureApiUrl):
        h.client(url=url)


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8000", "http://127.8.0.1", "http://[::1]:1", "http://localhost"]
)
def test_plain_http_to_loopback_and_https_are_accepted(h: Harness, url: str) -> None:
    client, _, _ = h.client(url=url)
    run(client.aclose())
    client, _, _ = h.client(url="https://api.example.com/")
    assert client.api_base_url == "https://api.example.com"
    run(client.aclose())


def test_typed_errors(h: Harness) -> None:
    async def scenario() -> None:
        address = user_on_plan(h, quota=10, max_devices=1)
        first, _, _ = h.client(name="first")
        second, _, _ = h.client(name="second")
        async with first, second:
            with pytest.raises(InvalidCredentials):
                await first.login(address, "wrong password!")
            await first.login(address, PASSWORD)
            with pytest.raises(DeviceLimit):
                await second.login(address, PASSWORD)
            with pytest.raises(QuotaExceeded):
                await first.reserve(11, "too-many-0001")
            devices = await first.devices()
            assert devices.devices_max == 1

    run(scenario())


def test_license_inactive(tmp_path: Path) -> None:
    with running_backend(tmp_path / "server", default_plan="no-such-plan") as backend:
        h = make_harness(backend, tmp_path)

        async def scenario() -> None:
            client, _, _ = h.client()
            async with client:
                await client.register(email(), PASSWORD)
                answer = await client.license()
                assert answer.info.status == "inactive" and answer.info.plan is None
                assert answer.lease.plan is None and answer.info.quota.limit == 0
                with pytest.raises(LicenseInactive):
                    await client.reserve(1, "inactive-0001")

        run(scenario())


def test_deactivate_device(h: Harness) -> None:
    async def scenario() -> None:
        address = user_on_plan(h, max_devices=2)
        first, _, _ = h.client(name="first")
        second, _, _ = h.client(name="second")
        async with first, second:
            await first.login(address, PASSWORD)
            await second.login(address, PASSWORD)
            other = [d for d in (await first.devices()).devices if not d.current]
            await first.deactivate_device(other[0].id)
            assert len((await first.devices()).devices) == 1

    run(scenario())


# --- offline -----------------------------------------------------------------------------------


def test_network_down_offline_lease_until_it_expires(h: Harness) -> None:
    async def scenario() -> None:
        client, _, _ = h.client()
        async with client:
            with pytest.raises(NoOfflineLease):
                client.offline_license()
            await client.register(email(), PASSWORD)
            lic = await client.license()
            h.backend.stop()
            with pytest.raises(Offline):
                await client.license()
            assert client.offline_license().plan == lic.lease.plan
            h.clock.advance(DEFAULT_LEASE_TTL_SECONDS - 60)
            assert client.offline_license().active
            h.clock.advance(120)
            with pytest.raises(TokenExpired):
                client.offline_license()

    run(scenario())


def test_an_answer_that_is_not_the_model_is_unexpected() -> None:
    # The usage backend's (and the license client's) parsing: a 200 that is not the model.
    junk = httpx.MockTransport(lambda request: httpx.Response(200, content=b"{}"))

    async def scenario() -> None:
        async with httpx.AsyncClient(base_url="http://127.0.0.1:9", transport=junk) as http:
            with pytest.raises(UnexpectedResponse) as refused:
                await HttpUsageBackend(http, "t").reserve(1, "corr-0001")
        assert str(refused.value) == "POST /usage/reserve: the answer is not a ReservationResponse"
        assert refused.value.status == 200

    asyncio.run(scenario())
