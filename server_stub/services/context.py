"""What every service needs: session factories, the clock, settings, keys and tokens."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from ..clock import Clock
from ..config import Settings
from ..keys import KeyStore
from ..metrics import Metrics
from ..tokens import TokenService


@dataclass(frozen=True)
class ServiceContext:
    settings: Settings
    clock: Clock
    engine: Engine
    write: sessionmaker[Session]
    read: sessionmaker[Session]
    #: Read-only transactions that see one snapshot across statements (long, batched reads).
    snapshot: sessionmaker[Session]
    keys: KeyStore
    tokens: TokenService
    metrics: Metrics

    @property
    def inline_database(self) -> bool:
        """Whether a request may call the database on the event loop (SQLite: see deps.py)."""
        return self.engine.dialect.name == "sqlite"
