"""Migration 0008 (clients): existing clients get their search name; the default product is
seeded once, and not over a catalogue that already exists."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from server_stub import db


def _to(conn: sa.Connection, revision: str) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", "server_stub:migrations")
    cfg.attributes["connection"] = conn
    command.upgrade(cfg, revision)


def test_existing_names_are_folded_and_the_product_is_seeded(database_url: str) -> None:
    engine = db.make_engine(database_url)
    clients = sa.table(
        "clients",
        *(sa.column(c, sa.String()) for c in ("id", "legal_name", "inn", "segment")),
        *(sa.column(c, sa.String()) for c in ("status", "deployment")),
        sa.column("contacts", sa.JSON()),
        sa.column("created_at", sa.DateTime(timezone=True)),
        sa.column("updated_at", sa.DateTime(timezone=True)),
    )
    now = datetime(2026, 1, 1, tzinfo=UTC)
    if engine.dialect.name == "sqlite":
        now = now.replace(tzinfo=None)
    try:
        with engine.begin() as conn:
            _to(conn, "0007")
            conn.execute(
                clients.insert().values(
                    id="c1",
                    legal_name="АО «ЁЛКА»",
                    inn="7707083893",
                    segment="smb",
                    status="active",
                    deployment="saas",
                    contacts=[],
                    created_at=now,
                    updated_at=now,
                )
            )
        db.upgrade(engine)
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT search_name FROM clients")).scalar_one() == (
                "ао «елка»"
            )
            assert conn.execute(sa.text("SELECT id FROM products")).scalars().all() == ["tgflow"]
            modules = conn.execute(sa.text("SELECT code FROM product_modules")).scalars().all()
            assert "broadcast" in modules and len(modules) == 5
    finally:
        engine.dispose()


def test_an_existing_catalogue_is_left_alone(database_url: str) -> None:
    engine = db.make_engine(database_url)
    try:
        with engine.begin() as conn:
            _to(conn, "0007")
            conn.execute(
                sa.text("INSERT INTO products (id, name, created_at) VALUES ('other', 'O', :t)"),
                {"t": datetime(2026, 1, 1, tzinfo=UTC).replace(tzinfo=None)},
            )
        db.upgrade(engine)
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT id FROM products")).scalars().all() == ["other"]
    finally:
        engine.dispose()
