"""`tgflow-server marketplace …`, and the marketplace migration against the models."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from agent.protocol import MarketplacePlan
from server_stub import db
from server_stub.cli import main as cli_main
from server_stub.models import Base
from tests.helpers.api import assert_problem, bearer
from tests.helpers.backend import Backend, BackendFactory
from tests.helpers.marketplace import CHAT, SHA, new_key, public_jwk

MARKETPLACE_TABLES = {
    "backends",
    "backend_keys",
    "apps",
    "backend_licenses",
    "installations",
    "audit_log",
}


def app_create_argv(data_dir: Path, app_id: str = CHAT, *extra: str) -> list[str]:
    return [
        "marketplace",
        "app",
        "create",
        "--id",
        app_id,
        "--name",
        "Chat",
        "--developer",
        "Dev Co",
        "--price",
        "monthly=990",
        "--price",
        "yearly=9900",
        "--price",
        "perpetual=29900",
        "--currency",
        "usd",
        "--artifact-url",
        "https://dev.example/chat.zip",
        "--artifact-sha256",
        SHA.upper(),
        "--artifact-size",
        "4096",
        "--iframe-url",
        "https://dev.example/chat/",
        "--callback-url",
        "https://dev.example/chat/callback",
        "--permission",
        "chat:read",
        "chat:write",
        "--permission",
        "chat:admin",
        "--data-dir",
        str(data_dir),
        *extra,
    ]


def mk(data: Path, *args: str) -> list[str]:
    """``tgflow-server marketplace <args> --data-dir <data>``."""
    return ["marketplace", *args, "--data-dir", str(data)]


def write_jwk(path: Path, jwk: object) -> Path:
    path.write_text(json.dumps(jwk), encoding="utf-8")
    return path


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli_main(argv)
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def created_backend(out: str) -> tuple[str, str]:
    backend_id = re.search(r"^backend id: (\S+)$", out, re.M)
    token = re.search(r"^admin token: (\S+)$", out, re.M)
    assert backend_id and token, out
    return backend_id[1], token[1]


@pytest.fixture
def live(make_backend: BackendFactory, monkeypatch: pytest.MonkeyPatch) -> Backend:
    """A running backend whose database and keys the CLI shares, on the wall clock's time."""
    backend = make_backend()
    monkeypatch.setenv("TGFLOW_DATABASE_URL", backend.database_url)
    monkeypatch.setenv("TGFLOW_LOG_LEVEL", "WARNING")
    # The CLI signs and decides with the system clock; the server must agree on the time.
    backend.clock.set(datetime.now(UTC))
    return backend


def test_the_operator_runs_the_marketplace_from_the_cli(
    live: Backend, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = live.settings.data_dir
    jwk_file = write_jwk(tmp_path / "acme.jwk", public_jwk(new_key()))
    code, out, _ = run(
        mk(data, "backend", "create", "--name", "Acme", "--jwk-file", str(jwk_file)), capsys
    )
    assert code == 0
    backend_id, token = created_backend(out)
    assert "valid until" in out

    code, out, _ = run(app_create_argv(data), capsys)
    assert (code, out.strip()) == (0, "app chat listed: Chat by Dev Co")
    code, out, _ = run(["marketplace", "apps", "--data-dir", str(data)], capsys)
    assert code == 0
    assert re.search(
        r"^chat\s+Chat\s+Dev Co\s+USD monthly=990 yearly=9900 perpetual=29900\s+"
        r"permissions: chat:admin,chat:read,chat:write$",
        out,
        re.M,
    ), out

    admin = bearer(token)
    catalog = live.client.get("/marketplace/catalog", headers=admin)
    assert catalog.status_code == 200, catalog.text
    (item,) = catalog.json()["apps"]
    assert item["artifact"]["sha256"] == SHA  # stored in lower case
    r = live.client.post(
        "/marketplace/licenses", json={"app_id": CHAT, "plan": "monthly"}, headers=admin
    )
    assert r.json()["status"] == "pending"

    until = (datetime.now(UTC) + timedelta(days=40)).date()
    code, out, _ = run(
        mk(
            data,
            "license",
            "activate",
            "--backend",
            backend_id,
            "--app",
            CHAT,
            "--until",
            str(until),
        ),
        capsys,
    )
    assert code == 0 and "monthly, active, until" in out, out
    end = datetime.combine(until + timedelta(days=1), datetime.min.time(), UTC)
    license_ = live.client.get("/marketplace/catalog", headers=admin).json()["apps"][0]["license"]
    assert datetime.fromisoformat(license_["expires_at"]) == end  # through the whole day
    assert (
        live.client.post(
            "/marketplace/installations", json={"app_id": CHAT}, headers=admin
        ).status_code
        == 201
    )

    code, out, _ = run(
        mk(data, "license", "revoke", "--backend", backend_id, "--app", CHAT), capsys
    )
    assert code == 0 and "monthly, revoked" in out
    user = live.client.post("/marketplace/user-tokens", headers=admin).json()["token"]
    assert live.client.get("/marketplace/installed", headers=bearer(user)).json()["apps"] == []

    code, out, _ = run(
        ["marketplace", "backend", "token", "--backend", backend_id, "--data-dir", str(data)],
        capsys,
    )
    assert code == 0 and "no longer works" in out
    _, new_token = created_backend(out)
    assert_problem(live.client.get("/marketplace/catalog", headers=admin), 401, "token_invalid")
    assert live.client.get("/marketplace/catalog", headers=bearer(new_token)).status_code == 200

    code, out, _ = run(
        ["marketplace", "audit", "--backend", backend_id, "--data-dir", str(data)], capsys
    )
    assert code == 0
    actions = [line.split()[3] for line in out.splitlines()]
    assert actions == [
        "backend.create",
        "license.request",
        "license.activate",
        "installation.create",
        "license.revoke",
        "backend.admin_token",
    ]
    assert token not in out and new_token not in out  # the trail holds ids, never tokens


def test_cli_errors_are_clean_messages(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "d"
    key = new_key()
    good = write_jwk(tmp_path / "good.jwk", public_jwk(key))
    private = write_jwk(tmp_path / "private.jwk", {**public_jwk(key), "d": "c2VjcmV0"})
    off_curve = write_jwk(tmp_path / "bad.jwk", {**public_jwk(key), "y": public_jwk(key)["x"]})
    not_json = tmp_path / "not.jwk"
    not_json.write_text("{", encoding="utf-8")

    def fails(argv: list[str], message: str) -> None:
        code, _, err = run([*argv, "--data-dir", str(data)], capsys)
        assert code == 2, err
        assert err.startswith("tgflow-server: error: ") and message in err, err

    create = ["marketplace", "backend", "create", "--name", "Acme", "--jwk-file"]
    fails([*create, str(private)], "holds a private key (member 'd')")
    fails([*create, str(tmp_path / "missing.jwk")], "cannot read the JWK file")
    fails([*create, str(not_json)], "is not JSON")
    fails([*create, str(off_curve)], "not a public EC P-256 key")
    code, out, _ = run([*create, str(good), "--data-dir", str(data)], capsys)
    assert code == 0
    backend_id, _ = created_backend(out)
    fails([*create, str(good)], "registered to another backend")
    fails(["marketplace", "backend", "create", "--name", " ", "--jwk-file", str(good)], "empty")
    fails(["marketplace", "backend", "token", "--backend", "nope"], "no backend nope")

    assert cli_main(app_create_argv(data)) == 0
    capsys.readouterr()
    code, _, err = run(app_create_argv(data), capsys)
    assert code == 2 and "is listed already" in err
    code, _, err = run(
        app_create_argv(data, "Bad_Id", "--artifact-url", "http://dev.example/x.zip"), capsys
    )
    assert code == 2
    assert "the app id must be" in err and "https:// (http:// only for localhost)" in err
    code, _, err = run(app_create_argv(data, "twice", "--price", "monthly=1"), capsys)
    assert code == 2 and "--price monthly is given twice" in err

    license_ = ["marketplace", "license", "activate", "--backend", backend_id, "--app", CHAT]
    fails(license_, "has not requested a license")
    fails(
        ["marketplace", "license", "revoke", "--backend", backend_id, "--app", CHAT], "no license"
    )
    fails(["marketplace", "license", "activate", "--backend", "nope", "--app", CHAT], "no backend")


def test_activation_rules_in_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from server_stub.config import Settings
    from server_stub.wiring import build_services

    data = tmp_path / "d"
    good = write_jwk(tmp_path / "good.jwk", public_jwk(new_key()))
    code, out, _ = run(
        mk(data, "backend", "create", "--name", "A", "--jwk-file", str(good)), capsys
    )
    backend_id, _ = created_backend(out)
    assert cli_main(app_create_argv(data)) == 0
    services = build_services(Settings(data_dir=data))
    activate = ["marketplace", "license", "activate", "--backend", backend_id, "--app", CHAT]
    try:
        services.marketplace.request_license(backend_id, CHAT, MarketplacePlan.TRIAL)
        capsys.readouterr()
        code, _, err = run([*activate, "--data-dir", str(data)], capsys)
        assert code == 2 and "is a trial" in err
        services.marketplace.request_license(backend_id, CHAT, MarketplacePlan.PERPETUAL)
        code, _, err = run([*activate, "--until", "2099-01-01", "--data-dir", str(data)], capsys)
        assert code == 2 and "does not expire" in err
        code, out, _ = run([*activate, "--data-dir", str(data)], capsys)
        assert code == 0 and "perpetual, active, no end" in out
        services.marketplace.request_license(backend_id, CHAT, MarketplacePlan.PERPETUAL)
    finally:
        services.ctx.engine.dispose()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["marketplace"], "required"),
        (["marketplace", "backend", "create", "--jwk-file", "x"], "--name"),
        (["marketplace", "app", "create", "--id", "x"], "required"),
        (
            ["marketplace", "license", "activate", "--backend", "b", "--app", "a", "--until", "x"],
            "is not an ISO date",
        ),
        (["marketplace", "app", "create", "--price", "trial=1"], "PLAN=AMOUNT"),
        (["marketplace", "app", "create", "--price", "monthly=-5"], "must not be negative"),
    ],
)
def test_bad_marketplace_arguments(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        cli_main(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_until_is_a_past_date_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "d"
    good = write_jwk(tmp_path / "good.jwk", public_jwk(new_key()))
    code, out, _ = run(
        mk(data, "backend", "create", "--name", "A", "--jwk-file", str(good)), capsys
    )
    backend_id, _ = created_backend(out)
    assert cli_main(app_create_argv(data)) == 0
    from server_stub.config import Settings
    from server_stub.wiring import build_services

    services = build_services(Settings(data_dir=data))
    try:
        services.marketplace.request_license(backend_id, CHAT, MarketplacePlan.MONTHLY)
    finally:
        services.ctx.engine.dispose()
    capsys.readouterr()
    code, _, err = run(
        mk(
            data,
            "license",
            "activate",
            "--backend",
            backend_id,
            "--app",
            CHAT,
            "--until",
            "2001-01-01",
        ),
        capsys,
    )
    assert code == 2 and "--until must be in the future" in err
    code, out, _ = run(
        mk(
            data,
            "license",
            "activate",
            "--backend",
            backend_id,
            "--app",
            CHAT,
            "--until",
            "2099-06-30T12:00:00+02:00",
        ),
        capsys,
    )
    assert code == 0 and "monthly, active, until 2099-06-30 10:00 UTC" in out, out


# --- the migration ------------------------------------------------------------------------------


def _alembic(conn: object) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", "server_stub:migrations")
    cfg.attributes["connection"] = conn
    return cfg


def test_the_migrations_build_exactly_the_models(database_url: str) -> None:
    engine = db.make_engine(database_url)
    try:
        db.upgrade(engine)
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(context, Base.metadata) == []
            assert set(inspect(conn).get_table_names()) >= MARKETPLACE_TABLES
    finally:
        engine.dispose()


def test_the_marketplace_migration_goes_down_and_up(database_url: str) -> None:
    engine = db.make_engine(database_url)
    try:
        db.upgrade(engine)
        with engine.begin() as conn:
            command.downgrade(_alembic(conn), "0002")
        with engine.connect() as conn:
            tables = set(inspect(conn).get_table_names())
        assert not MARKETPLACE_TABLES & tables and "telemetry_events" in tables
        db.upgrade(engine)
        with engine.connect() as conn:
            assert set(inspect(conn).get_table_names()) >= MARKETPLACE_TABLES
    finally:
        engine.dispose()
