"""A running reference backend as the server tests see it (its fixtures: tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import httpx
import pytest

from server_stub.clock import FakeClock
from server_stub.config import Settings
from server_stub.wiring import Services


@dataclass
class Backend:
    """A running reference backend and what a test needs to drive it."""

    url: str
    client: httpx.Client
    clock: FakeClock
    settings: Settings
    services: Services
    database_url: str


BackendFactory = Callable[..., Backend]


#: For a test of what only PostgreSQL does (several processes on one database): its backends
#: run on PostgreSQL alone instead of on each database.
ONLY_POSTGRES = pytest.mark.parametrize(
    "database_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
