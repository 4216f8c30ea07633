"""The ``Idempotency-Key`` header of money-moving POSTs, on the real routes that carry it
(``POST /staff/payments/import``, ``POST /external/payments``), on SQLite and PostgreSQL.

Stripe's semantics (docs/billing.md, "Idempotency-Key"): the first response to a key is stored
and replayed for 24 h, 4xx included (a 5xx is not stored); the same key with other parameters,
or while its first request still runs, is 409 ``idempotency_conflict``; keys are the caller's own.
Whether a request executed is read from the audit log (one ``payments.import`` per execution)
and from the answer itself: a second execution of a statement reports its rows as
``already_recorded``, a replay repeats ``imported``.
"""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, Response
from pydantic import BaseModel
from sqlalchemy import select, update
from sqlalchemy.exc import OperationalError

from server_stub.app import _sweep_forever, create_app
from server_stub.db import transaction
from server_stub.idempotency_models import HttpIdempotency
from server_stub.models import AuditEntry
from server_stub.portal_models import Contract
from server_stub.routers.idempotent import (
    IDEMPOTENCY_HEADER,
    KEY_PATTERN,
    REPLAYED_HEADER,
    UserIdempotent,
)
from server_stub.services.idempotency import request_fingerprint
from server_stub.services.staff import Role, staff_actor
from tests.helpers.api import PASSWORD, assert_problem, bearer, fingerprint
from tests.helpers.backend import Backend, BackendFactory
from tests.helpers.external import SECRET, seed_client, seed_contract, signed_headers
from tests.helpers.idempotency import WAIT_SECONDS, held, relogin
from tests.helpers.live_server import LiveServer
from tests.helpers.staff import StaffLogin, new_staff

IMPORT = "/staff/payments/import"
EXTERNAL = "/external/payments"
DAY = 24 * 3600


@pytest.fixture
def backend(make_backend: BackendFactory) -> Backend:
    return make_backend(external_hmac_secrets=SECRET)


def statement(contract_number: str, *ids: str, amount: int = 10_000) -> bytes:
    lines = ["source,external_id,contract_number,amount_minor,currency,paid_at"]
    lines += [f"bank,{i},{contract_number},{amount},RUB,2026-01-14" for i in ids]
    return ("\n".join(lines) + "\n").encode()


def upload(
    backend: Backend,
    who: StaffLogin,
    data: bytes,
    key: str | bytes | None,
    *,
    client: httpx.Client | None = None,
) -> httpx.Response:
    headers: dict[str, Any] = {**who.headers, "Content-Type": "text/csv"}
    if key is not None:
        headers[IDEMPOTENCY_HEADER] = key
    return (client or backend.client).post(IMPORT, content=data, headers=headers)


def imports_by(backend: Backend, who: StaffLogin) -> int:
    """How many times ``who``'s import executed (each writes one audit entry)."""
    with transaction(backend.services.ctx.read) as session:
        actions = session.scalars(
            select(AuditEntry.action).where(AuditEntry.actor == staff_actor(who.id))
        )
        return sum(1 for a in actions if a == "payments.import")


def a_contract(backend: Backend) -> Contract:
    return seed_contract(backend.services, seed_client(backend.services), 1_000_000)


def admin(backend: Backend) -> StaffLogin:
    return new_staff(backend.client, backend.services, backend.clock, Role.ADMIN)


def assert_replay_of(replay: httpx.Response, first: httpx.Response) -> None:
    assert replay.status_code == first.status_code
    assert replay.content == first.content
    assert replay.headers["content-type"] == first.headers["content-type"]
    assert replay.headers.get(REPLAYED_HEADER) == "true"
    assert REPLAYED_HEADER not in first.headers


# --- replay -------------------------------------------------------------------------------------


def test_a_retry_with_the_key_replays_the_first_answer_and_executes_nothing(
    backend: Backend,
) -> None:
    contract, who = a_contract(backend), admin(backend)
    data, key = statement(contract.number, "R-1", "R-2"), str(uuid.uuid4())
    first = upload(backend, who, data, key)
    assert first.status_code == 200, first.text
    assert first.json()["imported"] == 2
    for _ in range(2):
        assert_replay_of(upload(backend, who, data, key), first)
    assert imports_by(backend, who) == 1
    # Without a key the same statement executes again: its rows were recorded already.
    again = upload(backend, who, data, None)
    assert again.json() == {**first.json(), "imported": 0, "already_recorded": 2}
    assert imports_by(backend, who) == 2


def test_a_stored_4xx_is_replayed_even_after_the_world_changed(backend: Backend) -> None:
    contract, who = a_contract(backend), admin(backend)
    data, key = statement("Д-LATER", "L-1"), "refused-" + uuid.uuid4().hex
    first = upload(backend, who, data, key)
    problem = assert_problem(first, 422, "validation_error")
    assert problem["errors"][0]["loc"][-1] == "contract_number"
    # The contract it named exists now; the key still answers what it answered first.
    with transaction(backend.services.ctx.write) as session:
        session.execute(update(Contract).where(Contract.id == contract.id).values(number="Д-LATER"))
    assert_replay_of(upload(backend, who, data, key), first)
    # A new key is a new request, and it goes through.
    r = upload(backend, who, data, str(uuid.uuid4()))
    assert r.status_code == 200 and r.json()["imported"] == 1, r.text


def test_a_5xx_is_not_stored_and_the_retry_executes(backend: Backend) -> None:
    contract, who = a_contract(backend), admin(backend)
    data, key = statement(contract.number, "F-1"), str(uuid.uuid4())
    integrations = backend.services.integrations
    original = integrations.import_payments

    def database_down(*args: Any, **kwargs: Any) -> Any:
        raise OperationalError("INSERT", {}, Exception("connection lost"))

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(integrations, "import_payments", database_down)
        assert_problem(upload(backend, who, data, key), 503, "service_unavailable")
    assert integrations.import_payments == original
    r = upload(backend, who, data, key)
    assert r.status_code == 200 and r.json()["imported"] == 1, r.text
    assert REPLAYED_HEADER not in r.headers


# --- conflicts ----------------------------------------------------------------------------------


def test_the_key_with_other_parameters_is_a_conflict(backend: Backend) -> None:
    contract, who = a_contract(backend), admin(backend)
    data, key = statement(contract.number, "C-1"), str(uuid.uuid4())
    assert upload(backend, who, data, key).status_code == 200
    other_body = upload(backend, who, statement(contract.number, "C-2"), key)
    assert "other parameters" in assert_problem(other_body, 409, "idempotency_conflict")["detail"]
    other_query = backend.client.post(
        IMPORT + "?format=xlsx",
        content=data,
        headers={**who.headers, IDEMPOTENCY_HEADER: key},
    )
    assert_problem(other_query, 409, "idempotency_conflict")
    assert imports_by(backend, who) == 1


def test_another_caller_has_keys_of_their_own(backend: Backend) -> None:
    contract = a_contract(backend)
    first, second = admin(backend), admin(backend)
    key = "shared-key-0001"
    a = upload(backend, first, statement(contract.number, "S-1"), key)
    b = upload(backend, second, statement(contract.number, "S-2"), key)
    assert a.status_code == b.status_code == 200
    assert a.json()["imported"] == b.json()["imported"] == 1
    assert REPLAYED_HEADER not in b.headers
    assert imports_by(backend, first) == imports_by(backend, second) == 1


def test_a_retry_while_the_first_request_runs_is_refused_never_run_twice(
    backend: Backend,
) -> None:
    contract, who = a_contract(backend), admin(backend)
    data, key = statement(contract.number, "P-1"), str(uuid.uuid4())
    with (
        held(backend.services.integrations, "import_payments") as call,
        ThreadPoolExecutor(1) as pool,
        httpx.Client(base_url=backend.url, timeout=WAIT_SECONDS) as other,
    ):
        first = pool.submit(upload, backend, who, data, key, client=other)
        assert call.entered.wait(WAIT_SECONDS)
        busy = assert_problem(upload(backend, who, data, key), 409, "idempotency_conflict")
        assert "in progress" in busy["detail"]
        call.released.set()
        answer = first.result(WAIT_SECONDS)
    assert answer.status_code == 200, answer.text
    assert call.calls == 1
    assert_replay_of(upload(backend, who, data, key), answer)


def test_a_key_whose_request_died_frees_when_its_lease_ends(backend: Backend) -> None:
    """A crash after the work committed and before the answer was stored: the key refuses
    retries for the lease, then the retry executes (the import itself is safe to repeat)."""
    contract, who = a_contract(backend), admin(backend)
    data, key = statement(contract.number, "D-1"), str(uuid.uuid4())
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(backend.services.idempotency, "complete", lambda *_args: True)
        assert upload(backend, who, data, key).status_code == 200
    assert_problem(upload(backend, who, data, key), 409, "idempotency_conflict")
    backend.clock.advance(backend.settings.idempotency_lease_seconds)
    retry = upload(backend, who, data, key)
    assert retry.status_code == 200 and retry.json()["already_recorded"] == 1, retry.text
    assert_replay_of(upload(backend, who, data, key), retry)
    assert imports_by(backend, who) == 2


def test_concurrent_requests_with_one_key_execute_exactly_once(backend: Backend) -> None:
    contract, who = a_contract(backend), admin(backend)
    data, key = statement(contract.number, "X-1", "X-2"), str(uuid.uuid4())
    racers = 8
    barrier = threading.Barrier(racers)

    def race(_: int) -> httpx.Response:
        with httpx.Client(base_url=backend.url, timeout=30) as client:
            barrier.wait()
            return upload(backend, who, data, key, client=client)

    with ThreadPoolExecutor(racers) as pool:
        answers = list(pool.map(race, range(racers)))
    executed = [r for r in answers if r.status_code == 200 and REPLAYED_HEADER not in r.headers]
    assert len(executed) == 1, [(r.status_code, r.text) for r in answers]
    for r in answers:
        if r is executed[0]:
            continue
        if r.status_code == 200:
            assert_replay_of(r, executed[0])
        else:
            assert_problem(r, 409, "idempotency_conflict")
    assert imports_by(backend, who) == 1
    assert executed[0].json()["imported"] == 2


# --- expiry -------------------------------------------------------------------------------------


def test_after_24_hours_the_key_executes_again_and_the_sweeper_prunes_it(
    backend: Backend,
) -> None:
    contract, who = a_contract(backend), admin(backend)
    data, key = statement(contract.number, "E-1"), str(uuid.uuid4())
    first = upload(backend, who, data, key)
    assert first.status_code == 200
    backend.clock.advance(DAY - 60)
    who = relogin(backend.client, who, backend.clock)
    assert_replay_of(upload(backend, who, data, key), first)
    backend.clock.advance(60)
    who = relogin(backend.client, who, backend.clock)
    # Past 24 h the key is new: even other parameters are a new request.
    again = upload(backend, who, statement(contract.number, "E-2"), key)
    assert again.status_code == 200 and again.json()["imported"] == 1, again.text
    assert REPLAYED_HEADER not in again.headers
    assert imports_by(backend, who) == 2

    backend.clock.advance(DAY)
    swept = threading.Event()
    service = backend.services.idempotency
    original = service.sweep

    def observed() -> int:
        pruned = original()
        swept.set()
        return pruned

    async def sweep_once() -> None:
        task = asyncio.create_task(_sweep_forever(backend.services, 0.01))
        try:
            assert await asyncio.to_thread(swept.wait, WAIT_SECONDS)
        finally:
            task.cancel()

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(service, "sweep", observed)
        asyncio.run(sweep_once())
    with transaction(backend.services.ctx.read) as session:
        assert session.scalars(select(HttpIdempotency)).all() == []


# --- the key itself -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    ["", "k" * 256, "ключ".encode(), "tab\there"],
    ids=["empty", "too-long", "not-ascii", "control-character"],
)
def test_a_malformed_key_is_a_validation_error(backend: Backend, key: str | bytes) -> None:
    contract, who = a_contract(backend), admin(backend)
    r = upload(backend, who, statement(contract.number, "V-1"), key)
    problem = assert_problem(r, 422, "validation_error")
    assert any(e["loc"] == ["header", IDEMPOTENCY_HEADER] for e in problem["errors"]), problem
    assert imports_by(backend, who) == 0


def test_keys_of_1_and_255_printable_characters_are_accepted(backend: Backend) -> None:
    contract, who = a_contract(backend), admin(backend)
    for n, key in enumerate(["k", "~" + "x y" * 84 + "!!"]):
        assert len(key) in (1, 255)
        r = upload(backend, who, statement(contract.number, f"K-{n}"), key)
        assert r.status_code == 200, r.text


def test_every_route_with_the_header_documents_it_and_its_conflict(backend: Backend) -> None:
    document = backend.client.get("/openapi.json").json()
    carrying = {}
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for parameter in operation.get("parameters", []):
                if parameter["name"] == IDEMPOTENCY_HEADER:
                    carrying[f"{method.upper()} {path}"] = (parameter, operation["responses"])
    assert {"POST /staff/payments/import", "POST /external/payments"} <= set(carrying)
    for label, (parameter, responses) in carrying.items():
        assert parameter["in"] == "header" and not parameter.get("required"), label
        assert parameter["schema"]["anyOf"][0]["pattern"] == KEY_PATTERN, label
        assert "idempotency_conflict" in responses["409"]["description"], label


# --- /external/payments: the header beside its own (source, external_id) idempotency --------------


def post_external(backend: Backend, body: dict[str, Any], key: str | None) -> httpx.Response:
    raw = json.dumps(body).encode()
    headers = {
        "Content-Type": "application/json",
        **signed_headers(backend, "POST", "/external/payments", raw),
    }
    if key is not None:
        headers[IDEMPOTENCY_HEADER] = key
    return backend.client.post(EXTERNAL, content=raw, headers=headers)


def test_external_payments_take_the_header_too(backend: Backend) -> None:
    contract = a_contract(backend)
    body = {
        "source": "1c",
        "external_id": "ext-1",
        "contract_number": contract.number,
        "amount_minor": 25_000,
        "currency": "RUB",
        "paid_at": "2026-01-15T09:30:00+03:00",
    }
    key = str(uuid.uuid4())
    first = post_external(backend, body, key)
    assert first.status_code == 200, first.text
    assert REPLAYED_HEADER not in first.headers
    # Re-signed a second later (another timestamp), the same parameters: a replay.
    backend.clock.advance(1)
    assert_replay_of(post_external(backend, body, key), first)
    # Under the key, another payment is a conflict; without a key, the API's own contract holds:
    # the same payment id is answered as recorded, marked as a replay.
    other = {**body, "external_id": "ext-2"}
    assert_problem(post_external(backend, other, key), 409, "idempotency_conflict")
    plain = post_external(backend, body, None)
    assert plain.status_code == 200 and plain.headers.get(REPLAYED_HEADER) == "true"
    assert plain.json() == first.json()
    # The integration's keys are apart from a staff member's.
    who = admin(backend)
    r = upload(backend, who, statement(contract.number, "ext-3"), key)
    assert r.status_code == 200, r.text


def test_the_fingerprint_reads_json_canonically_and_anything_else_byte_for_byte() -> None:
    def fp(body: bytes, query: str = "") -> str:
        return request_fingerprint("POST", "/x", query, body)

    assert fp(b'{"a": 1, "b": [1, 2]}') == fp(b'{"b":[1,2],"a":1}')
    assert fp(b'{"a": 1}') != fp(b'{"a": 2}')
    assert fp(b"a,b\n1,2\n") != fp(b"a,b\n1,2\r\n")
    assert fp(b"", "b=2&a=1") == fp(b"", "a=1&b=2") != fp(b"", "a=1")
    assert request_fingerprint("POST", "/x", "", b"") != request_fingerprint("POST", "/y", "", b"")
    assert request_fingerprint("POST", "/x", "", b"") != request_fingerprint("PUT", "/x", "", b"")


# --- end users: UserIdempotent (the billing routes' dependency) -----------------------------------


class _Echo(BaseModel):
    amount_minor: int
    execution: int


def test_end_user_keys_are_scoped_to_the_user(backend: Backend) -> None:
    """A route as the billing routes will declare it, on the backend's own services."""
    executions: list[int] = []
    router = APIRouter()

    @router.post("/test/charge", status_code=201)
    async def charge(body: _Echo, idem: UserIdempotent) -> Response:
        def work() -> _Echo:
            executions.append(body.amount_minor)
            return _Echo(amount_minor=body.amount_minor, execution=len(executions))

        return await idem.run(work)

    app = create_app(backend.settings, services=backend.services, sweeper=False)
    app.include_router(router)
    with LiveServer(app) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        _charge_twice_as_two_users(backend, client, executions)


def _charge_twice_as_two_users(
    backend: Backend, client: httpx.Client, executions: list[int]
) -> None:
    tokens = [
        backend.services.auth.register(f"u{i}@example.com", PASSWORD, fingerprint(), None)
        for i in range(2)
    ]

    def charge_as(i: int, amount: int) -> httpx.Response:
        return client.post(
            "/test/charge",
            json={"amount_minor": amount, "execution": 0},
            headers={**bearer(str(tokens[i].access_token)), IDEMPOTENCY_HEADER: "charge-1"},
        )

    first = charge_as(0, 500)
    assert first.status_code == 201 and first.json() == {"amount_minor": 500, "execution": 1}
    assert_replay_of(charge_as(0, 500), first)
    assert_problem(charge_as(0, 700), 409, "idempotency_conflict")
    other = charge_as(1, 700)
    assert other.status_code == 201 and other.json()["execution"] == 2
    assert executions == [500, 700]
    unauthenticated = client.post(
        "/test/charge", json={"amount_minor": 1, "execution": 0}, headers={IDEMPOTENCY_HEADER: "k"}
    )
    assert_problem(unauthenticated, 401, "token_invalid")
    assert executions == [500, 700]
