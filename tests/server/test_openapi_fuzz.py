"""Property-based fuzzing of the HTTP contract with schemathesis, driven by ``/openapi.json``.

Every operation the backend documents is called with generated requests, valid ones and hostile
ones (schemathesis' negative mode: wrong types, out-of-range numbers, broken patterns, control
characters and NUL bytes, missing and unexpected fields and parameters, unsupported methods).
Each response must

- never be a 5xx (DESIGN.md: no input may produce a 500);
- carry a status code, content type, headers and body that the OpenAPI document declares for the
  operation (problem details are ``application/problem+json`` and match ``Problem``);
- reject invalid input, accept valid input, and refuse an authenticated operation without a
  valid token.

The runs:

- without credentials (schemathesis also generates random ``Authorization`` values);
- with a real bearer token of a registered user;
- a stateful run that chains ``reserve`` into ``commit`` / ``rollback`` of real reservations;
- the edges the generators cannot reach on their own, checked for conformance only: the rate
  limiter answering first, the database being down, and oversized request bodies.

The apps run in process (schemathesis' ASGI transport) on real SQLite databases. Generation is
seeded and derandomised, so every run sends the same requests.
"""

from __future__ import annotations

import copy
import secrets
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hypothesis
import pytest
import schemathesis
from argon2 import PasswordHasher
from fastapi import FastAPI
from schemathesis import Case, CheckContext, CheckFunction, Response
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import positive_data_acceptance

from agent.protocol import ErrorCode
from server_stub import passwords
from server_stub.app import create_app
from server_stub.config import Settings
from server_stub.middleware import UPLOAD_PREFIX, UPLOAD_SUFFIX
from server_stub.services.billing.contract import ProviderName
from server_stub.services.tabular import MAX_IMPORT_BYTES
from tests.helpers.api import PASSWORD, bearer, fingerprint
from tests.helpers.billing import RecordingAdapter
from tests.helpers.openapi_fuzz import (
    CONFORMANCE_CHECKS,
    StaffAdmin,
    fuzz_config,
    signing_secrets,
)

#: Examples per operation of the conformance-only runs, which mostly see the same answer (429
#: or 503).
EDGE_MAX_EXAMPLES = 5
#: Stateful run: sequences of calls, and calls per sequence.
STATEFUL_SEQUENCES = 25
STATEFUL_STEPS = 8


# --- the backends ---------------------------------------------------------------------------------
#
# Module-level on purpose: schemathesis parametrizes the tests with the schema each app serves, so
# the apps exist when the module is imported; and Hypothesis calls each test many times against
# the same backend, which keeps its state between requests as a real server does.

_DATA_DIRS: list[tempfile.TemporaryDirectory[str]] = []


def _new_app(**settings: Any) -> FastAPI:
    data_dir = tempfile.TemporaryDirectory(prefix="tgflow-fuzz-")
    _DATA_DIRS.append(data_dir)
    values: dict[str, Any] = {
        "data_dir": Path(data_dir.name) / "data",
        "database_url": None,
        "rate_limit_enabled": False,
        "sweep_interval_seconds": 3600,
        **signing_secrets(),
        **settings,
    }
    return create_app(Settings(**values), sweeper=False)


#: The backend under fuzz; the rate limiter is off so that requests are not answered by it alone.
APP = _new_app()
# Both payment providers configured (recording only), so a checkout is opened rather than
# refused for want of a provider (503, billing failing closed).
for _provider in ProviderName:
    APP.state.services.billing.add_adapter(RecordingAdapter(name=_provider))
#: The production default (limiter on), with a limit the run exceeds right away.
LIMITED_APP = _new_app(
    rate_limit_enabled=True, rate_limit_per_ip="5/minute", rate_limit_per_token="5/minute"
)
#: Its database is destroyed before its run (see ``outage_token``).
OUTAGE_APP = _new_app()


@pytest.fixture(scope="module", autouse=True)
def _backends() -> Iterator[None]:
    """Cheap Argon2id while the module runs; the databases are removed afterwards.

    The RFC 9106 low-memory profile costs ~0.25 s per hash or verify on a 2-core runner, and every
    fuzzed register or login would pay it. These tests are about the HTTP contract, not the KDF.
    """
    cheap = PasswordHasher(time_cost=1, memory_cost=64, parallelism=1)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(passwords, "_hasher", cheap)
        mp.setattr(passwords, "_DUMMY_HASH", cheap.hash("tgflow-no-such-user"))
        yield
    for app in (APP, LIMITED_APP, OUTAGE_APP):
        app.state.services.ctx.engine.dispose()
    for data_dir in _DATA_DIRS:
        data_dir.cleanup()


class Account:
    """A registered user with a device; hands out bearer tokens that stay valid for the run."""

    def __init__(self, app: FastAPI, plan: str | None = None) -> None:
        self.auth = app.state.services.auth
        self.email = f"fuzz-{secrets.token_hex(4)}@example.com"
        self.fingerprint = fingerprint()
        if plan is None:  # what POST /auth/register does: the default plan
            self.token = str(
                self.auth.register(self.email, PASSWORD, self.fingerprint, None).access_token
            )
        else:  # the operator's path (CLI): an account on a given plan
            self.auth.create_user(self.email, PASSWORD, plan)
            self.token = self.new_token()

    def new_token(self) -> str:
        """The access token of a new session on the same device."""
        return str(self.auth.login(self.email, PASSWORD, self.fingerprint, None).access_token)

    def token_for(self, case: Case) -> str:
        # POST /auth/logout ends the session of the token it is called with: give each call its
        # own session, so that the shared token keeps working for everything else.
        if case.operation.method.upper() == "POST" and case.operation.path == "/auth/logout":
            return self.new_token()
        return self.token


@pytest.fixture(scope="module")
def account() -> Account:
    return Account(APP)


# --- checks ---------------------------------------------------------------------------------------


#: Operations whose schema-valid input a domain rule may refuse with a 422 (no ``errors`` list).
DOMAIN_RULE_422 = frozenset(
    {
        "POST /usage/commit",
        # The subscription's state refuses the move (resume one not paused, cancel one canceled).
        "POST /subscriptions/cancel",
        "POST /subscriptions/pause",
        "POST /subscriptions/resume",
        # A live subscription an app store manages is changed there, not here.
        "POST /subscriptions/create",
        # Nothing is due (an active subscription has no renewal to pay now).
        "POST /subscriptions/renew",
        # One of its two filters (user, subscription) is required.
        "GET /staff/billing/payments",
        # More than remains unrefunded (or a payment refunded in full, or the provider refused).
        "POST /staff/billing/payments/{payment_id}/refund",
        # The plan or the subscription refuses the change (same, retired, other currency, a
        # state that cannot change, a card that declines).
        "POST /subscriptions/change-plan",
        "POST /subscriptions/change-plan/preview",
        "PUT /staff/notifications/settings",
        "POST /staff/notifications/test",
        "POST /staff/notifications/outbox/{seq}/redrive",
        "GET /staff/reports/licenses-by-month",
        "GET /staff/reports/module-usage",
        "GET /staff/reports/sales-by-module",
        # A cursor this server never gave out; a zero or blank adjustment; more used than held.
        "GET /points/history",
        "GET /staff/points/{user_id}/history",
        "POST /staff/points/{user_id}/adjust",
        "POST /points/holds/{hold_id}/commit",
        # The plan sells no extra messages, or the period's counter would overflow.
        "POST /usage/topup",
        # A consumable grants points and no plan, a subscription a plan and no points.
        "POST /staff/store/products",
        "PATCH /staff/store/products/{product_id}",
        # The store says the purchase is unpaid, unknown, or of another product or order.
        "POST /payments/verify",
        "POST /points/buy",
        "POST /subscriptions/verify",
    }
)

#: Fields whose value a schema can describe but not judge: a cursor this server never issued, an
#: INN whose check digits are wrong, a manager who is not a staff member, a date range that ends
#: before it starts. A 422 that blames only
#: these fields of that operation is a known rule.
FIELD_RULE_422: dict[str, frozenset[tuple[str, str]]] = {
    "GET /staff/clients": frozenset({("query", "cursor")}),
    "GET /staff/contracts": frozenset({("query", "cursor"), ("body", "signed_from")}),
    "GET /staff/clients/{client_id}/contracts": frozenset({("query", "cursor")}),
    "POST /staff/clients": frozenset({("body", "inn"), ("body", "manager_id")}),
    "PATCH /staff/clients/{client_id}": frozenset({("body", "manager_id")}),
}


def _upload(path: str) -> bool:
    """Whether ``path`` takes a file import (the body limit and the checks differ)."""
    return path.endswith(UPLOAD_SUFFIX) or path.startswith(UPLOAD_PREFIX)


def positive_data_acceptance_with_known_rules(
    ctx: CheckContext, response: Response, case: Case
) -> bool | None:
    """``positive_data_acceptance``, except for rules that no JSON Schema can express.

    - ``format: email`` is RFC 5321 syntax; the server (pydantic's ``EmailStr``, i.e.
      email-validator) also refuses special-use and reserved domains (RFC 6761: ``.test``,
      ``.local``, ...) and quoted local parts: a 422 that blames ``email`` fields alone (a
      staff member's, or a client's contacts').
    - DESIGN.md: a commit needs ``0 ≤ used ≤ messages`` of the stored reservation: a 422 from that
      domain rule (no schema ``errors`` list) on ``POST /usage/commit``.
    - A file import (a path ending in ``/import``) takes a CSV or XLSX file whose columns and
      rows no schema describes: a 422 ``validation_error`` refusing the file's content.
    - The portal's rules between fields or against the server's state (DOMAIN_RULE_422): a range
      that ends before it starts or is too long, a notification channel turned on without its
      secret in the environment, a test on a channel that is off, a redrive of a row not failed;
      and fields no schema can judge (FIELD_RULE_422: a foreign cursor, INN check digits, an
      unknown manager), when the 422 blames only them.
    - The body-size cap (``max_body_bytes``, 64 KiB by default) is a transport limit, not part of
      any schema: Hypothesis can build a schema-valid body over it (a long list of strings), and
      the documented 413 ``payload_too_large`` problem is then the right answer. Only for a body
      that really is over the configured cap; a 413 for a smaller body still fails.

    Any other refusal of schema-valid input still fails.
    """
    if response.status_code == 413 and _body_size(response) > _max_body_bytes():
        problem = response.json()
        if problem.get("code") == ErrorCode.PAYLOAD_TOO_LARGE:
            return None
    if response.status_code == 422:
        try:
            problem = response.json()
        except ValueError:
            problem = {}
        # A PATCH field that may be left out but not null is a union with a hidden ``None``
        # (NoNull): pydantic reports that branch too ("Input should be None"), beside the issue.
        issues = [i for i in problem.get("errors") or [] if i.get("type") != "none_required"]
        if issues and all(
            issue.get("loc", [None])[-1] == "email" and "email address" in issue.get("msg", "")
            for issue in issues
        ):
            return None
        if case.operation.label in DOMAIN_RULE_422 and "errors" not in problem:
            return None
        known = FIELD_RULE_422.get(case.operation.label)
        if known and issues and all(tuple(issue.get("loc", ())) in known for issue in issues):
            return None
        # An imported file's columns and rows are checked by the import, not by a schema (the
        # body is a CSV or XLSX file): a 422 that says the file was refused.
        if _upload(case.operation.path) and problem.get("code") == (ErrorCode.VALIDATION_ERROR):
            return None
    return positive_data_acceptance(ctx, response, case)


def _body_size(response: Response) -> int:
    body = response.request.body
    if isinstance(body, str):
        return len(body.encode())
    return len(body) if isinstance(body, bytes) else 0  # schemathesis sends no streams


def _max_body_bytes() -> int:
    """The cap of ``APP``, the backend every run with the behavioural checks calls."""
    limit = APP.state.services.ctx.settings.max_body_bytes
    assert isinstance(limit, int)
    return limit


BEHAVIOUR_CHECKS: list[CheckFunction] = [positive_data_acceptance_with_known_rules]


# --- fuzzing every operation ----------------------------------------------------------------------

anonymous = schemathesis.openapi.from_asgi("/openapi.json", APP, config=fuzz_config())
# The bearer token is set on every call; generating random ones as well would only replace it.
authenticated = schemathesis.openapi.from_asgi(
    "/openapi.json", APP, config=fuzz_config(**{"with-security-parameters": False})
)


@anonymous.parametrize()
def test_fuzz_without_credentials(case: Case) -> None:
    case.call_and_validate(additional_checks=BEHAVIOUR_CHECKS)


@authenticated.parametrize()
def test_fuzz_with_bearer_token(case: Case, account: Account) -> None:
    case.call_and_validate(
        headers=bearer(account.token_for(case)), additional_checks=BEHAVIOUR_CHECKS
    )


@pytest.fixture(scope="module")
def staff_admin() -> StaffAdmin:
    return StaffAdmin(APP.state.services)


staff_operations = schemathesis.openapi.from_asgi(
    "/openapi.json", APP, config=fuzz_config(**{"with-security-parameters": False})
).include(path_regex="^/staff/")


@staff_operations.parametrize()
def test_fuzz_staff_operations_as_an_admin(case: Case, staff_admin: StaffAdmin) -> None:
    case.call_and_validate(
        headers=bearer(staff_admin.token_for(case)), additional_checks=BEHAVIOUR_CHECKS
    )


# --- stateful: real reservations through commit and rollback --------------------------------------


def _with_reservation_links(document: dict[str, Any]) -> dict[str, Any]:
    """The served document plus OpenAPI links from each reservation answer to commit/rollback.

    Without them the fuzzer only ever commits or rolls back reservation ids it made up (404).
    """
    document = copy.deepcopy(document)

    def link(path: str) -> dict[str, Any]:
        return {
            "operationRef": "#/paths/" + path.replace("/", "~1") + "/post",
            "requestBody": {"reservation_id": "$response.body#/reservation_id"},
            # Keep the generated rest of the body (``used``), replace only the id.
            "x-schemathesis": {"merge_body": True},
        }

    links = {"Commit": link("/usage/commit"), "Rollback": link("/usage/rollback")}
    for path in ("/usage/reserve", "/usage/commit", "/usage/rollback"):
        for code, response in document["paths"][path]["post"]["responses"].items():
            if code.startswith("2"):
                response["links"] = links
    return document


stateful = schemathesis.openapi.from_dict(
    _with_reservation_links(APP.openapi()),
    config=fuzz_config(**{"with-security-parameters": False}),
).include(path_regex="^/usage/")
stateful.app = APP


def test_stateful_reservations() -> None:
    # A quota the run cannot exhaust, so that reservations are granted and can be settled.
    APP.state.services.plans.upsert("fuzz-unlimited", 10**9, 5, [])

    class Workflow(stateful.as_state_machine()):
        def setup(self) -> None:
            # A new account per sequence: the server answers a replayed sequence the way it
            # answered the first time (no correlation_id replays from an earlier sequence),
            # which Hypothesis requires of the data it draws from.
            self.token = Account(APP, plan="fuzz-unlimited").token

        def get_call_kwargs(self, case: Case) -> dict[str, Any]:
            return {"headers": bearer(self.token)}

        def validate_response(
            self,
            response: Response,
            case: Case,
            additional_checks: list[CheckFunction] | None = None,
            **kwargs: Any,
        ) -> None:
            super().validate_response(response, case, additional_checks=BEHAVIOUR_CHECKS, **kwargs)

    Workflow.run(
        settings=hypothesis.settings(
            max_examples=STATEFUL_SEQUENCES,
            stateful_step_count=STATEFUL_STEPS,
            derandomize=True,
            database=None,
            deadline=None,
        )
    )


# --- the edges: rate limiter, database outage, oversized bodies -----------------------------------
# These runs check conformance only. The behavioural checks (negative_data_rejection,
# missing_required_header, ignored_auth, unsupported_method, positive_data_acceptance) assume the
# request reached the handler, which is exactly what does not happen here: the limiter or the
# database answers first, with a documented 429 or 503.

rate_limited = schemathesis.openapi.from_asgi(
    "/openapi.json",
    LIMITED_APP,
    config=fuzz_config(
        checks={"enabled": False},
        phases={"coverage": {"enabled": False}},
        **{"max-examples": EDGE_MAX_EXAMPLES},
    ),
)


@rate_limited.parametrize()
def test_fuzz_rate_limited(case: Case) -> None:
    # The 429 the limiter answers is a client error, so not_a_server_error applies as well.
    case.call_and_validate(checks=[not_a_server_error, *CONFORMANCE_CHECKS])


outage = schemathesis.openapi.from_asgi(
    "/openapi.json",
    OUTAGE_APP,
    config=fuzz_config(
        checks={"enabled": False},
        phases={"coverage": {"enabled": False}},
        **{"max-examples": EDGE_MAX_EXAMPLES, "with-security-parameters": False},
    ),
)


@pytest.fixture(scope="module")
def outage_token() -> str:
    """A valid token for OUTAGE_APP, whose database is then destroyed."""
    token = Account(OUTAGE_APP).token
    ctx = OUTAGE_APP.state.services.ctx
    ctx.engine.dispose()
    database = Path(ctx.settings.resolved_database_url().removeprefix("sqlite:///"))
    database.write_bytes(b"this is not an SQLite database " * 256)
    return token


@outage.parametrize()
def test_fuzz_database_outage(case: Case, outage_token: str) -> None:
    # 503 service_unavailable is the documented answer, so not_a_server_error does not apply; a
    # 500 (documented nowhere) still fails status_code_conformance.
    case.call_and_validate(headers=bearer(outage_token), checks=CONFORMANCE_CHECKS)


def test_oversized_bodies_are_documented(account: Account) -> None:
    """Every operation, sent a body over ``max_body_bytes`` (a file import: over the import's
    limit), answers its documented 413."""
    limit = APP.state.services.ctx.settings.max_body_bytes
    upload = max(limit, MAX_IMPORT_BYTES)
    schema = schemathesis.openapi.from_asgi("/openapi.json", APP, config=fuzz_config())
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 13
    failures = {}
    for operation in operations:
        case = operation.Case(
            path_parameters={p.name: "abc" for p in operation.path_parameters},
            media_type="application/json",
        )
        response = case.call(
            headers={**bearer(account.token), "Content-Type": "application/json"},
            data=b"[" + b"0," * (upload if _upload(operation.path) else limit) + b"0]",
        )
        try:
            assert response.status_code == 413, response.text
            case.validate_response(response, checks=CONFORMANCE_CHECKS)
        except (AssertionError, FailureGroup) as exc:
            failures[operation.label] = str(exc)
    assert not failures, failures
