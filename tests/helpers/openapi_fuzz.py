"""Schemathesis' configuration of the OpenAPI fuzzing, shared by the in-process fuzz test
(tests/server/test_openapi_fuzz.py) and the reliability suite's run against a server process."""

from __future__ import annotations

import secrets
from typing import Any

import schemathesis
from schemathesis import Case, CheckFunction
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from server_stub.db import transaction
from server_stub.models import Staff
from server_stub.services.staff import Role
from server_stub.wiring import Services
from tests.helpers.api import PASSWORD

#: Fixed seed + derandomised Hypothesis: the same requests on every run, locally and in CI.
SEED = 20240611
#: Fuzzing-phase examples per operation; the examples and coverage phases add their own
#: deterministic cases (boundary values, each constraint violated, unsupported methods) on top.
MAX_EXAMPLES = 40

#: Status code, content type, headers and body against the document; nothing about behaviour.
CONFORMANCE_CHECKS: list[CheckFunction] = [
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


#: What rejects a schema-violating request (schemathesis' default list, plus 413).
NEGATIVE_REJECTIONS = [
    "400",
    "401",
    "403",
    "404",
    "405",
    "406",
    "409",
    "413",
    "415",
    "422",
    "428",
    "429",
    "5xx",
]


def fuzz_config(
    *,
    checks: dict[str, Any] | None = None,
    phases: dict[str, Any] | None = None,
    project: dict[str, Any] | None = None,
    **generation: Any,
) -> schemathesis.Config:
    """The seeded configuration; ``generation`` overrides its ``[generation]`` keys and
    ``project`` adds top-level ones (``headers``, ``workers``, ``request-timeout``, …)."""
    return schemathesis.Config.from_dict(
        {
            **(project or {}),
            "seed": SEED,
            "generation": {
                # Valid and invalid requests alike: negative mode sends the hostile inputs.
                "mode": "all",
                "max-examples": MAX_EXAMPLES,
                "deterministic": True,
                # No example database on disk: each run starts from the seed alone.
                "database": "none",
                **generation,
            },
            # Every built-in check is on by default; positive_data_acceptance is swapped for a
            # narrowed version (see positive_data_acceptance_with_known_rules).
            "checks": checks
            or {
                "positive_data_acceptance": {"enabled": False},
                # A schema-violating body over the body-size cap is refused before it is read:
                # the documented 413 payload_too_large is a rejection too (schemathesis' own
                # list, plus 413).
                "negative_data_rejection": {"expected-statuses": NEGATIVE_REJECTIONS},
            },
            **({"phases": phases} if phases else {}),
        }
    )


def signing_secrets() -> dict[str, str]:
    """Server settings (by name) that let the signed endpoints judge a request rather than fail
    closed for want of a secret: ``/external`` then refuses an unsigned request 401 (not 503),
    the webhooks an unsigned delivery 401 (not 403). New random secrets on every call."""
    return {
        "external_hmac_secrets": "fuzz-" + secrets.token_hex(32),
        "stripe_webhook_secrets": "whsec_fuzz" + secrets.token_hex(16),
        "cloudpayments_api_secret": "fuzz-" + secrets.token_hex(16),
    }


class StaffAdmin:
    """An Admin with a two-factor session (made directly, as a login with TOTP would make it);
    a new session for each ``/staff/logout``, which ends the one it is called with."""

    def __init__(self, services: Services) -> None:
        self.services = services
        email = f"fuzz-admin-{secrets.token_hex(4)}@example.com"
        self.id = self.services.staff.create("fuzz", email, "Fuzz", Role.ADMIN, PASSWORD).id
        self.token = self.new_token()

    def new_token(self) -> str:
        ctx = self.services.ctx
        with transaction(ctx.write) as session:
            staff = session.get(Staff, self.id)
            assert staff is not None
            issued = self.services.staff.sessions.start(
                session, staff, ["pwd", "otp"], ctx.clock.now()
            )
        return str(issued.access_token)

    def token_for(self, case: Case) -> str:
        if case.operation.path == "/staff/logout":
            return self.new_token()
        return self.token
