"""Schemathesis over the ``/marketplace`` operations with real Backend Admin and User Tokens.

``test_openapi_fuzz.py`` covers every operation with an ordinary access token, which the
marketplace refuses (403) before it reads the request. Here each operation gets the token it
takes, so the answers of the accepting paths (catalog, licenses, installations, keys, installed)
are generated and checked too: never a 5xx, everything as the OpenAPI document says, schema-valid
input accepted, invalid input refused. Seeded and derandomised like the main fuzz run.
"""

from __future__ import annotations

import copy
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from schemathesis import Case, CheckContext, Response
from schemathesis.specs.openapi.checks import positive_data_acceptance

from agent.protocol import MarketplacePlan
from server_stub.app import create_app
from server_stub.config import Settings
from tests.helpers.api import bearer
from tests.helpers.marketplace import app_spec, new_key, public_jwk
from tests.helpers.openapi_fuzz import fuzz_config

_DATA_DIR = tempfile.TemporaryDirectory(prefix="tgflow-market-fuzz-")
APP: FastAPI = create_app(
    Settings(
        data_dir=Path(_DATA_DIR.name) / "data",
        database_url=None,
        rate_limit_enabled=False,
        sweep_interval_seconds=3600,
    ),
    sweeper=False,
)
_market = APP.state.services.marketplace
for _app_id in ("chat", "a", "board"):
    _market.create_app(app_spec(_app_id))
_market.create_app(app_spec("cheap", prices={MarketplacePlan.MONTHLY: 0}))
_TENANT = _market.create_backend("Fuzz Ltd", public_jwk(new_key()))
ADMIN_TOKEN = _TENANT.admin_token.token
USER_TOKEN = _market.issue_user_token(_TENANT.backend.id).token


@pytest.fixture(scope="module", autouse=True)
def _cleanup() -> Iterator[None]:
    yield
    APP.state.services.ctx.engine.dispose()
    _DATA_DIR.cleanup()


def positive_data_acceptance_with_marketplace_rules(
    ctx: CheckContext, response: Response, case: Case
) -> bool | None:
    """``positive_data_acceptance``, except for the rules no JSON Schema can express.

    - a backend key must be a point on P-256, and a ``kid`` sent along must be its thumbprint;
    - a paid plan must be one the app is offered on (``cheap`` has a monthly price only).
    """
    if response.status_code == 422:
        try:
            problem = response.json()
        except ValueError:
            problem = {}
        detail = str(problem.get("detail", ""))
        issues = problem.get("errors") or []
        label = case.operation.label
        if (
            label == "PUT /marketplace/backends/me/keys"
            and issues
            and all(
                issue.get("loc") == ["body", "jwk"]
                and ("P-256" in issue.get("msg", "") or "thumbprint" in issue.get("msg", ""))
                for issue in issues
            )
        ):
            return None
        if label == "POST /marketplace/licenses" and "is not offered on the" in detail:
            return None
    return positive_data_acceptance(ctx, response, case)


def _with_app_examples(document: dict[str, Any]) -> dict[str, Any]:
    """The served document plus ``examples`` of listed app ids, wherever an app id goes.

    Random strings that match the app-id pattern are never the id of a listed app, so without
    these every license and installation request would be a 404.
    """
    document = copy.deepcopy(document)
    examples = ["chat", "cheap"]
    for name in ("LicenseRequest", "InstallationRequest"):
        document["components"]["schemas"][name]["properties"]["app_id"]["examples"] = examples
    for path in document["paths"].values():
        for operation in path.values():
            for parameter in operation.get("parameters", []):
                if parameter["name"] == "app_id":
                    parameter["schema"]["examples"] = examples
    return document


schema = schemathesis.openapi.from_dict(
    _with_app_examples(APP.openapi()),
    config=fuzz_config(
        checks={"positive_data_acceptance": {"enabled": False}},
        **{"with-security-parameters": False},
    ),
).include(path_regex="^/marketplace/")
schema.app = APP


def _token_for(case: Case) -> dict[str, str]:
    if case.operation.path == "/marketplace/installed":
        return bearer(USER_TOKEN)
    return bearer(ADMIN_TOKEN)


@schema.parametrize()
def test_fuzz_marketplace_with_its_tokens(case: Case) -> None:
    case.call_and_validate(
        headers=_token_for(case),
        additional_checks=[positive_data_acceptance_with_marketplace_rules],
    )


def test_the_fuzz_reached_the_accepting_paths() -> None:
    """The run above is only worth something if requests got through: check what it left."""
    actions: dict[str, Any] = {}
    for row in _market.audit_trail(backend_id=_TENANT.backend.id):
        actions[row.action] = actions.get(row.action, 0) + 1
    assert actions.get("license.request", 0) >= 1, actions
    assert actions.get("installation.create", 0) >= 1, actions
