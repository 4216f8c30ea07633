"""ASGI entry for ``uvicorn --factory`` (one app per worker, settings from ``TGFLOW_*``)."""

from __future__ import annotations

from fastapi import FastAPI

from .app import create_app
from .config import Settings


def create_app_from_env() -> FastAPI:
    return create_app(Settings())
