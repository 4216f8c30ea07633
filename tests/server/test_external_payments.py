"""``POST /external/payments`` over HTTP on SQLite and PostgreSQL: the request signature (good,
bad, missing, stale, future, rotated, unset), idempotency, partial payments, bad input."""

from __future__ import annotations

import json
import threading
from typing import Any

import httpx
import pytest
from pydantic import ValidationError
from sqlalchemy import select

from server_stub.config import Settings
from server_stub.db import transaction
from server_stub.models import AuditEntry
from server_stub.services.integrations.signatures import SIGNATURE_HEADER, TIMESTAMP_HEADER
from tests.helpers.api import assert_problem
from tests.helpers.backend import Backend, BackendFactory
from tests.helpers.external import (
    OLD_SECRET,
    SECRET,
    contract_state,
    payment_body,
    payments_of,
    seed_client,
    seed_contract,
    seed_license,
    signed,
    signed_headers,
)

PATH = "/external/payments"


@pytest.fixture
def billing(make_backend: BackendFactory) -> Backend:
    return make_backend(external_hmac_secrets=SECRET)


def post(backend: Backend, body: Any, **options: Any) -> httpx.Response:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return signed(backend, "POST", PATH, raw, **options)


def a_contract(backend: Backend, amount: int = 100_000, currency: str = "RUB") -> Any:
    return seed_contract(backend.services, seed_client(backend.services), amount, currency)


def race(backend: Backend, bodies: list[bytes]) -> list[httpx.Response]:
    """Post each signed body from its own thread and connection, all released at once."""
    barrier = threading.Barrier(len(bodies))
    answers: list[httpx.Response] = []
    lock = threading.Lock()

    def report(data: bytes) -> None:
        with httpx.Client(base_url=backend.url, timeout=30) as client:
            barrier.wait()
            r = signed(backend, "POST", PATH, data, client=client)
        with lock:
            answers.append(r)

    threads = [threading.Thread(target=report, args=(data,)) for data in bodies]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return answers


# --- the signature ------------------------------------------------------------------------------


def test_a_signed_payment_is_recorded(billing: Backend) -> None:
    contract = a_contract(billing)
    r = post(billing, payment_body(contract.number, 40_000))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["contract_status"] == "signed" and body["contract_paid_at"] is None
    assert (body["amount_paid"], body["amount_remaining"]) == (40_000, 60_000)
    assert body["licenses_available"] == []
    assert len(payments_of(billing.services, contract.id)) == 1


def test_missing_or_wrong_signatures_are_refused(billing: Backend) -> None:
    contract = a_contract(billing)
    raw = json.dumps(payment_body(contract.number, 1000)).encode()
    good = signed_headers(billing, "POST", PATH, raw)
    cases: list[dict[str, str]] = [
        {},
        {TIMESTAMP_HEADER: good[TIMESTAMP_HEADER]},
        {SIGNATURE_HEADER: good[SIGNATURE_HEADER]},
        {**good, SIGNATURE_HEADER: "v1=" + "0" * 64},
        {**good, SIGNATURE_HEADER: "v0=" + good[SIGNATURE_HEADER][3:]},
        {**good, SIGNATURE_HEADER: good[SIGNATURE_HEADER][:-1]},
        {**good, SIGNATURE_HEADER: "garbage"},
        {**good, SIGNATURE_HEADER: "v1=" + "ab" * 600},
        {**good, SIGNATURE_HEADER: ",".join([good[SIGNATURE_HEADER]] * 9)},
        {**good, TIMESTAMP_HEADER: "12.5"},
        {**good, TIMESTAMP_HEADER: "-1"},
        {**good, TIMESTAMP_HEADER: str(int(good[TIMESTAMP_HEADER]) + 1)},
        # Signed with another secret, or for another method.
        signed_headers(billing, "POST", PATH, raw, secret="x" * 40),
        signed_headers(billing, "PUT", PATH, raw),
        signed_headers(billing, "POST", PATH + "?x=1", raw),
    ]
    for headers in cases:
        r = billing.client.post(PATH, content=raw, headers=headers)
        assert_problem(r, 401, "token_invalid")
    assert payments_of(billing.services, contract.id) == []
    # The same request with the good headers goes through; a v0 entry beside v1 is ignored.
    both = {**good, SIGNATURE_HEADER: "v0=abc, " + good[SIGNATURE_HEADER]}
    assert billing.client.post(PATH, content=raw, headers=both).status_code == 200


def test_a_body_changed_after_signing_is_refused(billing: Backend) -> None:
    contract = a_contract(billing)
    raw = json.dumps(payment_body(contract.number, 1000)).encode()
    headers = signed_headers(billing, "POST", PATH, raw)
    tampered = raw.replace(b"1000", b"9000")
    r = billing.client.post(PATH, content=tampered, headers=headers)
    assert_problem(r, 401, "token_invalid")
    assert payments_of(billing.services, contract.id) == []


@pytest.mark.parametrize(
    ("skew", "accepted"), [(-300, True), (300, True), (-301, False), (301, False)]
)
def test_the_timestamp_must_be_within_300_seconds(
    billing: Backend, skew: int, accepted: bool
) -> None:
    contract = a_contract(billing)
    r = post(billing, payment_body(contract.number, 1000), skew=skew)
    if accepted:
        assert r.status_code == 200, r.text
    else:
        problem = assert_problem(r, 401, "token_invalid")
        assert ("old" if skew < 0 else "future") in problem["detail"]
        assert "300 s" in problem["detail"]


def test_a_request_replayed_after_the_window_is_refused(billing: Backend) -> None:
    contract = a_contract(billing)
    raw = json.dumps(payment_body(contract.number, 1000)).encode()
    headers = signed_headers(billing, "POST", PATH, raw)
    assert billing.client.post(PATH, content=raw, headers=headers).status_code == 200
    billing.clock.advance(301)
    r = billing.client.post(PATH, content=raw, headers=headers)
    assert "old" in assert_problem(r, 401, "token_invalid")["detail"]


def test_every_configured_secret_is_accepted_during_rotation(make_backend: BackendFactory) -> None:
    backend = make_backend(external_hmac_secrets=f"{SECRET}, {OLD_SECRET}")
    contract = a_contract(backend)
    for secret in (SECRET, OLD_SECRET):
        r = post(backend, payment_body(contract.number, 1000), secret=secret)
        assert r.status_code == 200, r.text
    r = post(backend, payment_body(contract.number, 1000), secret="retired-" + "z" * 40)
    assert_problem(r, 401, "token_invalid")
    assert len(payments_of(backend.services, contract.id)) == 2


def test_without_a_secret_nothing_is_accepted(backend: Backend) -> None:
    contract = a_contract(backend)
    raw = json.dumps(payment_body(contract.number, 1000)).encode()
    for headers in ({}, signed_headers(backend, "POST", PATH, raw)):
        r = backend.client.post(PATH, content=raw, headers=headers)
        problem = assert_problem(r, 503, "service_unavailable")
        assert "TGFLOW_EXTERNAL_HMAC_SECRETS" in problem["detail"]
    r = backend.client.get(
        "/external/licenses/export",
        headers=signed_headers(backend, "GET", "/external/licenses/export"),
    )
    assert_problem(r, 503, "service_unavailable")
    assert payments_of(backend.services, contract.id) == []


def test_a_short_secret_is_refused_at_start_without_showing_it(tmp_path: Any) -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(data_dir=tmp_path, external_hmac_secrets=f"{SECRET},tooshort-secret-4")
    assert "#2" in str(caught.value) and "tooshort" not in str(caught.value)
    assert (
        len(Settings(data_dir=tmp_path, external_hmac_secrets=f" {SECRET} ,").external_hmac_secrets)
        == 1
    )


# --- payments -----------------------------------------------------------------------------------


def test_the_same_report_again_gets_the_same_answer(billing: Backend) -> None:
    contract = a_contract(billing)
    body = payment_body(contract.number, 25_000)
    first = post(billing, body)
    billing.clock.advance(60)
    again = post(billing, body)
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    # The same instant written in another offset is the same report.
    assert post(billing, {**body, "paid_at": "2026-01-15T06:30:00Z"}).json() == first.json()
    assert len(payments_of(billing.services, contract.id)) == 1


def test_another_report_under_the_same_id_is_a_conflict(billing: Backend) -> None:
    contract = a_contract(billing)
    other = a_contract(billing)
    body = payment_body(contract.number, 25_000)
    assert post(billing, body).status_code == 200
    for change in (
        {"amount_minor": 25_001},
        {"paid_at": "2026-01-14T09:30:00+03:00"},
        {"contract_number": other.number},
        {"contract_number": "no-such-contract"},
    ):
        assert_problem(post(billing, {**body, **change}), 409, "idempotency_conflict")
    # The same external id from another source is another payment.
    assert post(billing, {**body, "source": "bank"}).status_code == 200
    assert len(payments_of(billing.services, contract.id)) == 2
    assert payments_of(billing.services, other.id) == []


def test_partial_payments_then_paid_makes_the_licenses_available(billing: Backend) -> None:
    services = billing.services
    client_id = seed_client(services)
    contract = seed_contract(services, client_id, 100_000)
    active = seed_license(services, client_id, contract_id=contract.id, plan="enterprise")
    seed_license(services, client_id, contract_id=contract.id, status="pending_approval")
    seed_license(services, client_id)  # another contract's (none)

    first = post(billing, payment_body(contract.number, 30_000)).json()
    assert (first["amount_paid"], first["amount_remaining"]) == (30_000, 70_000)
    assert first["contract_status"] == "signed" and first["licenses_available"] == []
    assert contract_state(services, contract.id).paid_at is None

    body = payment_body(contract.number, 70_000, paid_at="2026-01-15T10:00:00Z")
    paid = post(billing, body).json()
    assert paid["contract_status"] == "paid"
    assert paid["contract_paid_at"] == "2026-01-15T10:00:00Z"
    assert (paid["amount_paid"], paid["amount_remaining"]) == (100_000, 0)
    assert paid["licenses_available"] == [
        {"id": active["id"], "product": "tgflow", "plan": "enterprise", "file_version": 1}
    ]
    assert active["license_key"] not in json.dumps(paid)
    state = contract_state(services, contract.id)
    assert state.status == "paid" and state.paid_at is not None

    # An overpayment is recorded; the contract stays paid with its first paid_at.
    more = post(billing, payment_body(contract.number, 5_000)).json()
    assert (more["amount_paid"], more["amount_remaining"], more["contract_status"]) == (
        105_000,
        0,
        "paid",
    )
    assert more["contract_paid_at"] == "2026-01-15T10:00:00Z"

    with transaction(services.ctx.read) as session:
        entries = session.scalars(
            select(AuditEntry).where(AuditEntry.object == f"contract/{contract.id}")
        ).all()
    assert [e.action for e in entries] == [
        "payment.record",
        "payment.record",
        "contract.paid",
        "payment.record",
    ]
    assert {e.actor for e in entries} == {"integration:1c"}
    assert entries[1].details["amount_minor"] == 70_000


def test_a_closed_contract_records_the_payment_but_stays_closed(billing: Backend) -> None:
    services = billing.services
    contract = seed_contract(services, seed_client(services), 1000, status="closed")
    body = post(billing, payment_body(contract.number, 1000)).json()
    assert body["contract_status"] == "closed" and body["amount_remaining"] == 0


def test_unknown_contract_and_other_currency(billing: Backend) -> None:
    contract = a_contract(billing, currency="RUB")
    assert_problem(post(billing, payment_body("Д-NOPE", 1000)), 404, "not_found")
    problem = assert_problem(
        post(billing, payment_body(contract.number, 1000, currency="USD")), 422, "validation_error"
    )
    assert "RUB" in problem["detail"]
    assert payments_of(billing.services, contract.id) == []


def test_bad_input_is_a_422_never_a_500(billing: Backend) -> None:
    contract = a_contract(billing)
    good = payment_body(contract.number, 1000)
    bodies: list[Any] = [
        b"",
        b"not json",
        b"[]",
        b"null",
        b'{"source": "1c"',
        "\udcff".encode("utf-8", "surrogatepass"),
        json.dumps(good).encode("utf-16"),
        {k: v for k, v in good.items() if k != "amount_minor"},
        {**good, "extra": 1},
        {**good, "amount_minor": "1000"},
        {**good, "amount_minor": 1000.0},
        {**good, "amount_minor": True},
        {**good, "amount_minor": 0},
        {**good, "amount_minor": -5},
        {**good, "amount_minor": 10**16},
        {**good, "amount_minor": 10**40},
        {**good, "currency": "rub"},
        {**good, "currency": "RUBL"},
        {**good, "source": ""},
        {**good, "source": "a" * 65},
        {**good, "source": "bad source"},
        {**good, "external_id": ""},
        {**good, "external_id": " padded"},
        {**good, "external_id": "x" * 129},
        {**good, "external_id": "line\nbreak"},
        {**good, "contract_number": "n" * 65},
        {**good, "contract_number": 42},
        {**good, "paid_at": "2026-01-15T09:30:00"},
        {**good, "paid_at": "2026-01-15"},
        {**good, "paid_at": 1768460000},
        {**good, "paid_at": "yesterday"},
        {**good, "paid_at": "1999-12-31T23:59:59Z"},
        {**good, "paid_at": "2030-01-01T00:00:00Z"},
        {**good, "paid_at": "9999-12-31T23:59:59-23:59"},
    ]
    for body in bodies:
        r = post(billing, body)
        assert_problem(r, 422, "validation_error")
    assert payments_of(billing.services, contract.id) == []
    assert_problem(billing.client.get(PATH), 405, "method_not_allowed")


def test_concurrent_reports_of_one_payment_record_it_once(billing: Backend) -> None:
    """Several billing workers report the same payment at once (their retries racing)."""
    contract = a_contract(billing, amount=90_000)
    body = payment_body(contract.number, 50_000)
    raw = json.dumps(body).encode()
    partial = [payment_body(contract.number, 10_000) for _ in range(4)]
    answers = race(billing, [raw] * 8 + [json.dumps(p).encode() for p in partial])
    assert [r.status_code for r in answers] == [200] * len(answers), [r.text for r in answers]
    same = [r.json() for r in answers if r.json()["external_id"] == body["external_id"]]
    assert len({a["payment_id"] for a in same}) == 1
    recorded = payments_of(billing.services, contract.id)
    assert len(recorded) == 1 + len(partial)
    assert sum(p.amount_minor for p in recorded) == 90_000
    assert contract_state(billing.services, contract.id).status == "paid"


def test_one_id_raced_against_several_contracts_is_recorded_once(billing: Backend) -> None:
    """The same payment id reported at once for different contracts: the contract locks do not
    order them, the unique key does; one is recorded, the others are conflicts."""
    contracts = [a_contract(billing) for _ in range(4)]
    bodies = [
        json.dumps(payment_body(c.number, 1000, external_id="raced-1")).encode() for c in contracts
    ]
    answers = race(billing, bodies)
    codes = sorted(r.status_code for r in answers)
    assert codes == [200] + [409] * (len(bodies) - 1), [r.text for r in answers]
    recorded = [p for c in contracts for p in payments_of(billing.services, c.id)]
    assert len(recorded) == 1
