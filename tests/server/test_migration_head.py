"""Start-up skips Alembic when the schema is already at the newest revision (it would stay in
every worker's memory), so ``db.head_revision()`` must be exactly what Alembic would reach."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

from server_stub import db

ROOT = Path(__file__).resolve().parents[2]


def _config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", "server_stub:migrations")
    return cfg


def test_the_head_read_from_the_file_names_is_alembics_one_head() -> None:
    scripts = ScriptDirectory.from_config(_config())
    assert scripts.get_heads() == [db.head_revision()]
    # Each revision is its file's number and the history is one line, oldest first.
    for script in scripts.walk_revisions():
        assert script.path is not None
        assert Path(script.path).name.startswith(f"{script.revision}_")
        if script.down_revision is not None:
            assert int(script.revision) == int(str(script.down_revision)) + 1


def test_a_schema_behind_the_head_is_still_upgraded(database_url: str) -> None:
    engine = db.make_engine(database_url)
    try:
        assert not db.at_head(engine)  # an empty database has no alembic_version
        with engine.begin() as conn:
            cfg = _config()
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "0017")
        assert not db.at_head(engine)
        db.upgrade(engine)
        assert db.at_head(engine)
        with engine.connect() as conn:
            version = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
        assert version == db.head_revision()
    finally:
        engine.dispose()


def test_a_start_at_the_head_does_not_import_alembic(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'tgflow.db'}"
    engine = db.make_engine(url)
    try:
        db.upgrade(engine)
    finally:
        engine.dispose()
    start = (
        "import sys\n"
        "from server_stub import app, db\n"
        f"engine = db.make_engine({url!r})\n"
        "db.upgrade(engine)\n"
        "heavy = ('alembic', 'stripe', 'openpyxl')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", start], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
