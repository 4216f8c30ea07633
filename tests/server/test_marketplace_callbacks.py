"""Install/uninstall callbacks through the outbox, and free apps.

A real HTTP receiver on an ephemeral port plays the app; the tests run the sweep function
directly and move the fake clock, so retries happen at their exact backoff times, without sleeps.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest

from agent.protocol import MarketplacePlan
from server_stub.app import _sweep_forever
from server_stub.marketplace_tokens import CALLBACK_TTL_SECONDS, CALLBACK_TYP
from server_stub.models import MarketplaceCallback
from server_stub.services.callbacks import GIVE_UP_AFTER, LEASE
from tests.helpers.api import assert_problem
from tests.helpers.backend import Backend, BackendFactory
from tests.helpers.marketplace import (
    CHAT,
    Market,
    app_spec,
    at,
    new_tenant,
)


class Receiver:
    """The app's callback endpoint: records every request, answers with ``status``.

    ``status`` may be changed between sweeps; a 500 after recording is an app that processed
    the event but whose answer was lost.
    """

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.status = 200
        self.hold: threading.Event | None = None
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver._lock:
                    receiver.requests.append(
                        {
                            "path": self.path,
                            "content_type": self.headers.get("Content-Type"),
                            "body": json.loads(body),
                        }
                    )
                    status = receiver.status
                if receiver.hold is not None:
                    receiver.hold.wait(10)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/callback"

    def tokens(self) -> list[str]:
        with self._lock:
            return [r["body"]["token"] for r in self.requests]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def closed_port_url() -> str:
    """A URL nobody listens on: connections are refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/callback"


def point_callback(backend: Backend, url: str, app_id: str = CHAT) -> None:
    """Move the app's callback URL (the listing is otherwise the one callback_market made)."""
    backend.services.marketplace.update_app(app_spec(app_id, callback_url=url))


def callback_market(make_backend: BackendFactory, url: str) -> Market:
    backend = make_backend()
    backend.services.marketplace.create_app(app_spec(callback_url=url))
    market = Market(backend, new_tenant(backend))
    assert market.license("trial").status_code == 201
    return market


def sweep(market: Market) -> int:
    return market.backend.services.callbacks.deliver_due()


def events(market: Market) -> list[MarketplaceCallback]:
    return market.backend.services.callbacks.events(backend_id=market.tenant.id)


def verify_callback(backend: Backend, token: str, app_id: str = CHAT) -> dict[str, Any]:
    """Verify a callback token as the app would: ES256, the marketplace's ``license`` key from
    its JWKS, ``aud`` = the app's id, the issuer, ``typ``, and the times (fake clock)."""
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "ES256"
    assert header["kid"] == backend.services.ctx.keys.signing_key("license").kid
    jwks = backend.client.get("/.well-known/jwks.json").json()["keys"]
    license_jwk = next(k for k in jwks if k["kid"] == header["kid"])
    claims: dict[str, Any] = jwt.decode(
        token,
        jwt.PyJWK(license_jwk).key,
        algorithms=["ES256"],
        audience=app_id,
        issuer=backend.settings.issuer,
        options={"verify_exp": False, "verify_iat": False, "verify_nbf": False},
    )
    now = int(backend.clock.now().timestamp())
    assert claims["typ"] == CALLBACK_TYP
    assert claims["iat"] == claims["nbf"] == now
    assert claims["exp"] == now + CALLBACK_TTL_SECONDS
    assert claims["jti"] == claims["event_id"]
    assert claims["app_id"] == app_id
    return claims


# --- delivery -----------------------------------------------------------------------------------


def test_an_install_is_called_back_once_with_a_verifiable_token(
    make_backend: BackendFactory, receiver: Receiver
) -> None:
    market = callback_market(make_backend, receiver.url)
    installed_at = market.backend.clock.now()
    assert market.install(config={"greeting": "hi"}).status_code == 201
    (event,) = events(market)
    assert (event.kind, event.attempts, event.delivered_at) == ("installed", 0, None)
    assert event.next_attempt_at == event.created_at == installed_at
    assert receiver.requests == []  # the request did not wait for the app

    market.backend.clock.advance(5)
    assert sweep(market) == 1
    (request,) = receiver.requests
    assert request["path"] == "/callback"
    assert request["content_type"] == "application/json"
    assert set(request["body"]) == {"token"}
    claims = verify_callback(market.backend, request["body"]["token"])
    assert claims["event_id"] == event.id
    assert claims["event"] == "installed"
    assert claims["backend_id"] == market.tenant.id
    assert claims["aud"] == CHAT
    assert claims["occurred_at"] == int(installed_at.timestamp())
    (event,) = events(market)
    assert event.delivered_at == market.backend.clock.now()
    assert (event.attempts, event.next_attempt_at, event.last_error) == (1, None, None)

    # Repeats are not new installations: no new event, nothing more to deliver.
    assert market.install(config={"greeting": "hi"}).status_code == 200
    assert market.install(config={"greeting": "hello"}).status_code == 200  # config change
    assert len(events(market)) == 1
    assert sweep(market) == 0
    assert len(receiver.requests) == 1


def test_the_app_being_down_does_not_stop_the_install_and_it_is_retried(
    make_backend: BackendFactory, receiver: Receiver
) -> None:
    market = callback_market(make_backend, receiver.url)
    clock = market.backend.clock
    receiver.status = 500
    t0 = clock.now()
    assert market.install().status_code == 201
    assert market.installed() == [CHAT]  # installed whatever the app answers

    assert sweep(market) == 0
    (event,) = events(market)
    assert (event.attempts, event.last_error) == (1, "HTTP 500")
    assert event.next_attempt_at == t0 + timedelta(seconds=30)

    # Now nobody listens at all.
    point_callback(market.backend, closed_port_url())
    clock.set(t0 + timedelta(seconds=29))
    assert sweep(market) == 0
    assert events(market)[0].attempts == 1  # not due yet
    clock.set(t0 + timedelta(seconds=30))
    assert sweep(market) == 0
    (event,) = events(market)
    assert event.attempts == 2 and event.last_error is not None
    assert event.last_error.startswith("ConnectError")
    assert event.next_attempt_at == t0 + timedelta(seconds=30 + 60)

    clock.set(t0 + timedelta(seconds=90))
    assert sweep(market) == 0
    assert events(market)[0].next_attempt_at == t0 + timedelta(seconds=90 + 120)

    # The app is back.
    point_callback(market.backend, receiver.url)
    receiver.status = 200
    clock.set(t0 + timedelta(seconds=209))
    assert sweep(market) == 0
    clock.set(t0 + timedelta(seconds=210))
    assert sweep(market) == 1
    (event,) = events(market)
    assert event.attempts == 4 and event.delivered_at == clock.now()
    # Two requests reached the receiver (the 500 and the success), the same event both times.
    assert len(receiver.requests) == 2
    assert verify_callback(market.backend, receiver.tokens()[-1])["jti"] == event.id
    clock.advance(86400)
    assert sweep(market) == 0
    assert len(receiver.requests) == 2
    unverified = [jwt.decode(t, options={"verify_signature": False}) for t in receiver.tokens()]
    assert {c["jti"] for c in unverified} == {event.id}


def test_a_lost_answer_brings_the_same_event_again(
    make_backend: BackendFactory, receiver: Receiver
) -> None:
    """The app processed the event but its answer was lost (500 after recording): the retry
    carries the same event id, which is how the app knows it has seen it."""
    market = callback_market(make_backend, receiver.url)
    receiver.status = 500
    assert market.install().status_code == 201
    assert sweep(market) == 0
    receiver.status = 200
    market.backend.clock.advance(30)
    assert sweep(market) == 1
    first, second = receiver.tokens()
    retried = verify_callback(market.backend, second)
    lost = jwt.decode(first, options={"verify_signature": False})
    assert lost["event_id"] == retried["event_id"] == events(market)[0].id
    assert lost["jti"] == retried["jti"]
    assert retried["iat"] == lost["iat"] + 30  # each attempt is signed afresh
    (event,) = events(market)
    assert event.attempts == 2 and event.delivered_at is not None


def test_an_uninstall_is_called_back_and_follows_the_install(
    make_backend: BackendFactory, receiver: Receiver
) -> None:
    market = callback_market(make_backend, receiver.url)
    clock = market.backend.clock
    receiver.status = 503
    assert market.install().status_code == 201
    assert sweep(market) == 0  # the install event is retrying
    assert market.uninstall().status_code == 204
    assert market.uninstall().status_code == 204  # nothing removed: no event
    installed, uninstalled = events(market)
    assert (installed.kind, uninstalled.kind) == ("installed", "uninstalled")

    # The uninstall is due, but it does not overtake the install.
    assert sweep(market) == 0
    assert len(receiver.requests) == 1
    assert events(market)[1].attempts == 0

    receiver.status = 200
    clock.advance(30)
    assert sweep(market) == 2
    kinds = [verify_callback(market.backend, t)["event"] for t in receiver.tokens()[1:]]
    assert kinds == ["installed", "uninstalled"]
    assert all(e.delivered_at == clock.now() for e in events(market))
    assert receiver.tokens()[-1] != receiver.tokens()[-2]


def test_it_gives_up_after_24_hours(make_backend: BackendFactory) -> None:
    market = callback_market(make_backend, closed_port_url())
    clock = market.backend.clock
    t0 = clock.now()
    assert market.install().status_code == 201

    expected, t, delay = [0], 0, 30
    while t < GIVE_UP_AFTER.total_seconds():
        t = min(t + delay, int(GIVE_UP_AFTER.total_seconds()))
        delay = min(delay * 2, 3600)
        expected.append(t)
    assert expected[:9] == [0, 30, 90, 210, 450, 930, 1890, 3810, 7410]
    assert expected[9] == 7410 + 3600 and expected[-1] == 86400

    attempted: list[int] = []
    for _ in range(len(expected) + 5):
        (event,) = events(market)
        if event.next_attempt_at is None:
            break
        clock.set(event.next_attempt_at)
        assert sweep(market) == 0
        attempted.append(int((clock.now() - t0).total_seconds()))
    assert attempted == expected

    (event,) = events(market)
    assert event.failed_at == t0 + GIVE_UP_AFTER
    assert (event.delivered_at, event.next_attempt_at) == (None, None)
    assert event.attempts == len(expected)
    trail = market.backend.services.marketplace.audit_trail(backend_id=market.tenant.id)
    (failed,) = [row for row in trail if row.action == "callback.failed"]
    assert failed.actor == "clock" and failed.app_id == CHAT
    assert failed.at == t0 + GIVE_UP_AFTER
    assert failed.after is not None
    assert failed.after["event_id"] == event.id and failed.after["attempts"] == len(expected)
    clock.advance(86400)
    assert sweep(market) == 0  # failed for good


def test_a_sweeper_that_dies_mid_attempt_leaves_the_event_to_the_next_after_its_lease(
    make_backend: BackendFactory, receiver: Receiver
) -> None:
    market = callback_market(make_backend, receiver.url)
    callbacks = market.backend.services.callbacks
    assert market.install().status_code == 201
    claim = callbacks._claim_next()  # claimed, then the worker died before posting
    assert claim is not None and claim.attempt == 1
    assert sweep(market) == 0  # leased: no other sweeper touches it
    market.backend.clock.advance(LEASE.total_seconds())
    assert sweep(market) == 1
    (event,) = events(market)
    assert event.attempts == 2 and event.delivered_at is not None
    assert len(receiver.requests) == 1


def test_two_sweepers_deliver_each_event_once(
    make_backend: BackendFactory, receiver: Receiver
) -> None:
    market = callback_market(make_backend, receiver.url)
    tenants = [new_tenant(market.backend, f"T{i}") for i in range(6)]
    for tenant in tenants:
        assert market.license("trial", tenant=tenant).status_code == 201
        assert market.install(tenant=tenant).status_code == 201

    start = threading.Barrier(2)
    delivered: list[int] = []

    def one_sweeper() -> None:
        start.wait(10)
        delivered.append(market.backend.services.callbacks.deliver_due())

    workers = [threading.Thread(target=one_sweeper) for _ in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    assert sum(delivered) == len(tenants)
    backends = sorted(
        jwt.decode(t, options={"verify_signature": False})["backend_id"] for t in receiver.tokens()
    )
    assert backends == sorted(t.id for t in tenants)


def test_the_periodic_sweeper_delivers(make_backend: BackendFactory, receiver: Receiver) -> None:
    market = callback_market(make_backend, receiver.url)
    assert market.install().status_code == 201
    callbacks = market.backend.services.callbacks
    delivered = threading.Event()
    original = callbacks.deliver_due

    def observed(limit: int = 50) -> int:
        count = original(limit)
        if count:
            delivered.set()
        return count

    callbacks.deliver_due = observed  # type: ignore[method-assign]

    async def run_until_delivered() -> None:
        task = asyncio.create_task(_sweep_forever(market.backend.services, 0.01))
        try:
            assert await asyncio.to_thread(delivered.wait, 30), "the sweeper never delivered"
        finally:
            task.cancel()

    asyncio.run(run_until_delivered())
    assert len(receiver.requests) == 1


# --- free apps ----------------------------------------------------------------------------------


def test_a_free_plan_is_active_at_once_and_does_not_lapse(
    make_backend: BackendFactory, receiver: Receiver
) -> None:
    backend = make_backend()
    backend.services.marketplace.create_app(
        app_spec(
            "notes",
            callback_url=receiver.url,
            prices={MarketplacePlan.PERPETUAL: 0, MarketplacePlan.MONTHLY: 0},
        )
    )
    backend.services.marketplace.create_app(
        app_spec("pro", prices={MarketplacePlan.MONTHLY: 0, MarketplacePlan.YEARLY: 9900})
    )
    market = Market(backend, new_tenant(backend))
    now = backend.clock.now()

    r = market.license("perpetual", app_id="notes")
    assert r.status_code == 201, r.text
    lic = r.json()
    assert (lic["plan"], lic["status"]) == ("perpetual", "active")
    assert at(lic["started_at"]) == now
    assert lic["expires_at"] is None and lic["grace_until"] is None
    again = market.license("perpetual", app_id="notes")
    assert again.status_code == 200 and again.json() == lic

    assert market.install("notes").status_code == 201  # no payment step
    assert market.catalog_entry("notes")["prices"]["perpetual"] == 0
    assert sweep(market) == 1 and len(receiver.requests) == 1

    # A monthly plan priced 0 has nothing to renew: it stays active.
    r = market.license("monthly", app_id="pro")
    assert r.status_code == 201 and r.json()["status"] == "active"
    backend.clock.advance(100 * 86400)  # three monthly periods and more
    assert market.catalog_entry("pro")["license"]["status"] == "active"
    assert sorted(market.installed()) == ["notes"]
    # The operator's activation has nothing to extend on a license that never ends.
    view = backend.services.marketplace.activate_license(market.tenant.id, "pro")
    assert view.expires_at is None and view.status == "active"
    # The paid plan of the same app is still a paid plan; plan changes are the operator's.
    assert_problem(market.license("yearly", app_id="pro"), 409, "already_exists")

    actions = market.actions(app_id="notes")
    assert actions[0] == (f"backend:{market.tenant.id}", "license.request")


def test_free_plan_requested_during_a_trial_is_active_at_once(make_backend: BackendFactory) -> None:
    backend = make_backend()
    backend.services.marketplace.create_app(
        app_spec(prices={MarketplacePlan.MONTHLY: 990, MarketplacePlan.PERPETUAL: 0})
    )
    market = Market(backend, new_tenant(backend))
    assert market.license("trial").status_code == 201
    r = market.license("monthly")
    assert r.status_code == 201 and r.json()["status"] == "trial"  # paid: waits, trial runs
    r = market.license("perpetual")
    assert r.status_code == 201 and r.json()["status"] == "active"
    backend.clock.advance(30 * 86400)
    assert market.catalog_entry()["license"]["status"] == "active"
