"""Throwaway databases: an SQLite file per test, a PostgreSQL database per test."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

POSTGRES_ADMIN_URL = os.environ.get(
    "TGFLOW_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("TGFLOW_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def _required(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0", "false")


def postgres_or_skip() -> None:
    import psycopg

    try:
        psycopg.connect(POSTGRES_ADMIN_URL, connect_timeout=3).close()
    except psycopg.Error as exc:
        reason = f"PostgreSQL not reachable at {POSTGRES_ADMIN_URL}: {exc}"
        if _required("TGFLOW_REQUIRE_POSTGRES"):
            pytest.fail(reason + " (TGFLOW_REQUIRE_POSTGRES is set)")
        pytest.skip(reason)


def redis_or_skip() -> None:
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3).ping()
    except redis.RedisError as exc:
        reason = f"Redis not reachable at {REDIS_URL}: {exc}"
        if _required("TGFLOW_REQUIRE_REDIS"):
            pytest.fail(reason + " (TGFLOW_REQUIRE_REDIS is set)")
        pytest.skip(reason)


@contextmanager
def postgres_database() -> Iterator[str]:
    """Create a database of our own on the shared server and drop it afterwards."""
    import psycopg

    postgres_or_skip()
    name = "tgflow_test_" + secrets.token_hex(6)
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
