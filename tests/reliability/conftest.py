"""The reliability suite: adversity against real processes, and the report it writes."""

from __future__ import annotations

import os
import platform

import pytest

from tests.helpers.reliability_report import Report

_REPORT = Report()
_SUITE = os.path.dirname(__file__)


@pytest.fixture
def reliability() -> Report:
    """Where a scenario records what it tried and what it lost (docs/RELIABILITY.md)."""
    return _REPORT


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # Only a full, green run of the suite may rewrite the committed report: a `-k` subset or a
    # failing scenario would otherwise leave a table that claims less (or more) than is true.
    config = session.config
    selected = bool(config.option.keyword or config.option.markexpr)
    if exitstatus != 0 or selected or session.testsfailed or not _REPORT.rows:
        return
    ran = {item.nodeid for item in session.items if item.nodeid.startswith("tests/reliability/")}
    if not ran:
        return
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    _REPORT.write("./dev test tests/reliability", machine)
