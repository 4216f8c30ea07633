"""The reliability suite: adversity against real processes, and the report it writes."""

from __future__ import annotations

import os
import platform
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.reliability_network import SeededServer, backend_process
from tests.helpers.reliability_report import Report

_REPORT = Report()
_SUITE = os.path.dirname(__file__)
#: The suite's tests that were skipped (a service absent): the report would claim less.
_SKIPPED: set[str] = set()


def _whole_suite(config: pytest.Config) -> bool:
    """The run was given the suite's directory or one that holds it (``tests``, the testpaths),
    not one of its files or tests."""
    suite = Path(_SUITE).resolve()
    for arg in config.args:
        path = Path(config.invocation_params.dir, arg.split("::", 1)[0]).resolve()
        if "::" not in arg and (path == suite or path in suite.parents):
            return True
    return False


@pytest.fixture
def reliability() -> Report:
    """Where a scenario records what it tried and what it lost (docs/RELIABILITY.md)."""
    return _REPORT


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and report.nodeid.startswith("tests/reliability/"):
        _SKIPPED.add(report.nodeid)


@pytest.fixture(scope="session")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeededServer]:
    """One backend for the scenarios that only add customers of their own to it (a start costs
    ~20 s on a loaded machine); a scenario that changes the server itself (the fuzzer rotates
    signing keys, edits plans) starts its own."""
    with backend_process(tmp_path_factory.mktemp("backend")) as server:
        yield server


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # Only a full, green run of the suite may rewrite the committed report: a subset (`-k`, a
    # file, a skipped scenario) or a failing scenario would otherwise leave a table that claims
    # less (or more) than is true.
    config = session.config
    selected = bool(config.option.keyword or config.option.markexpr)
    if exitstatus != 0 or selected or session.testsfailed or not _REPORT.rows:
        return
    if _SKIPPED or not _whole_suite(config):
        return
    ran = {item.nodeid for item in session.items if item.nodeid.startswith("tests/reliability/")}
    if not ran:
        return
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    _REPORT.write("./dev test tests/reliability", machine)
