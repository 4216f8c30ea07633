"""Settings: where the database URL comes from."""

from __future__ import annotations

from pathlib import Path

import pytest

from server_stub.config import Settings


def test_default_database_is_sqlite_in_the_data_dir(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    assert settings.resolved_database_url() == f"sqlite:///{tmp_path / 'tgflow.db'}"


def test_postgres_urls_use_psycopg3(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, database_url="postgres://u@db.example/tgflow")
    assert settings.resolved_database_url() == "postgresql+psycopg://u@db.example/tgflow"


def test_database_url_from_a_secret_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = tmp_path / "dsn"
    secret.write_text("postgresql://app:s3cret@db.example/tgflow\n")
    monkeypatch.setenv("TGFLOW_DATABASE_URL_FILE", str(secret))
    monkeypatch.setenv("TGFLOW_DATABASE_URL", "postgresql://ignored@elsewhere/x")
    settings = Settings(data_dir=tmp_path)
    assert settings.resolved_database_url() == "postgresql+psycopg://app:s3cret@db.example/tgflow"
    assert "ignored@elsewhere" not in repr(settings)  # the DSN is a SecretStr


def test_cors_origins_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TGFLOW_CORS_ORIGINS", "https://a.example, https://b.example")
    assert Settings().cors_origins == ["https://a.example", "https://b.example"]
