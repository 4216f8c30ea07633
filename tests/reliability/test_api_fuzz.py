"""Schemathesis over the whole OpenAPI document of a real server process: no 5xx.

The same seeded configuration as the in-process fuzz test (tests/helpers/openapi_fuzz.py), run by
schemathesis' own engine (what ``schemathesis run`` does: the examples, coverage and fuzzing
phases) over HTTP against a backend process of its own (2 uvicorn workers, PostgreSQL): the staff
operations with an Admin's token, every other one with a customer's. Every response must not be a
5xx and must conform to the document (status code, content type, headers, body). The behavioural
checks stay with the in-process test, which knows the domain rules a schema cannot express; so
do the operations that would end the session every other call of the run carries.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.engine import Status, events, from_schema

from tests.helpers.api import fingerprint
from tests.helpers.openapi_fuzz import (
    CONFORMANCE_CHECKS,
    StaffAdmin,
    fuzz_config,
    signing_secrets,
)
from tests.helpers.reliability_network import SeededServer, backend_process
from tests.helpers.reliability_report import Report
from tests.helpers.reliability_server import tgflow_env

#: Fuzzing-phase examples per operation (the examples and coverage phases add theirs on top).
EXAMPLES = 10
STAFF = "^/staff/"
#: What ends the session every other call of the run carries: the logouts, and an Admin's
#: disabling of (or 2FA reset for) an account, which the fuzzer may aim at its own (it learns
#: ids from the answers, GET /staff/accounts among them).
SESSION_ENDING = "^/(auth/logout|staff/logout|staff/accounts/[^/]+/(disable|reset-2fa))$"

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeededServer]:
    """A backend of its own: the run rotates signing keys and edits plans, which other
    scenarios' customers must not see. Configured like the in-process fuzz test's, so that the
    signed endpoints judge requests rather than fail closed for want of a secret."""
    env = tgflow_env(signing_secrets())
    with backend_process(tmp_path_factory.mktemp("fuzz"), env=env) as server:
        yield server


@dataclass
class Tally:
    """What the engine's runs sent and what they found."""

    statuses: Counter[int] = field(default_factory=Counter)
    operations: set[str] = field(default_factory=set)
    failures: list[str] = field(default_factory=list)
    #: Operations that answered a 5xx, and how often.
    server_errors: Counter[str] = field(default_factory=Counter)

    @property
    def total(self) -> int:
        return sum(self.statuses.values())

    def add(self, event: events.EngineEvent) -> None:
        if isinstance(event, events.ScenarioFinished | events.FuzzScenarioFinished):
            recorder = event.recorder
            self.operations.add(recorder.label)
            for interaction in recorder.interactions.values():
                if interaction.response is not None:
                    self.statuses[interaction.response.status_code] += 1
                    if interaction.response.status_code >= 500:
                        self.server_errors[recorder.label] += 1
            self.failures += [
                f"{recorder.label}: {node.name}: {node.failure_info.failure.title}: "
                f"{node.failure_info.code_sample}"
                for nodes in recorder.checks.values()
                for node in nodes
                if node.status is Status.FAILURE and node.failure_info is not None
            ]
        elif isinstance(event, events.NonFatalError | events.FatalError):
            self.failures.append(f"{type(event).__name__}: {event}")


def _run(url: str, token: str, tally: Tally, *, staff: bool) -> None:
    checks = {"enabled": False} | {
        check.__name__: {"enabled": True} for check in (not_a_server_error, *CONFORMANCE_CHECKS)
    }
    config = fuzz_config(
        checks=checks,
        phases={"stateful": {"enabled": False}},
        project={"headers": {"Authorization": f"Bearer {token}"}, "workers": 2},
        **{"max-examples": EXAMPLES, "with-security-parameters": False},
    )
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json", config=config)
    part = schema.include(path_regex=STAFF) if staff else schema.exclude(path_regex=STAFF)
    for event in from_schema(part.exclude(method="POST", path_regex=SESSION_ENDING)).execute():
        tally.add(event)


def test_openapi_fuzz_against_a_server_process(backend: SeededServer, reliability: Report) -> None:
    tally = Tally()
    _run(backend.url, backend.customer(1000).login(fingerprint()), tally, staff=False)
    _run(backend.url, StaffAdmin(backend.services).token, tally, staff=True)
    assert not tally.failures, tally.failures[:10]
    assert not tally.server_errors, tally.server_errors
    # The whole document was walked, and the calls got past authentication.
    assert len(tally.operations) >= 130, len(tally.operations)
    assert tally.total >= 10 * len(tally.operations), tally.total
    assert sum(n for status, n in tally.statuses.items() if status < 300) >= 300, tally.statuses
    by_class = Counter(f"{status // 100}xx" for status in tally.statuses.elements())
    reliability.record(
        "schemathesis over the whole OpenAPI",
        tried=(
            f"{tally.total} generated requests (valid and hostile; examples, coverage and "
            f"fuzzing phases, seed fixed) over {len(tally.operations)} operations, as a customer "
            "and as a staff Admin, to the 2-worker server process on PostgreSQL; answers: "
            + ", ".join(f"{n} {c}" for c, n in sorted(by_class.items()))
        ),
        checked=(
            "no 5xx; status code, content type, headers and body as the document declares "
            "(its first runs found a plan's price or quota over 2**31 - 1 answered 503 on "
            "PostgreSQL: prices widened by migration 0018, quotas bounded at 10**9)"
        ),
    )
