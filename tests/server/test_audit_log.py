"""The one audit log: the chain holds under concurrency, breaks are found (edit, delete,
reorder), checkpoints anchor it, an export verifies offline, the marketplace's old records
survive the move (migration 0006). SQLite and PostgreSQL."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import Engine, text

from agent.audit_verify import main as verify_main
from agent.audit_verify import pinned_keys, verify_export
from agent.protocol import KEY_PURPOSE_LICENSE, audit_chain_verdict
from server_stub import db
from server_stub.cli import main as cli_main
from server_stub.services.audit import entry_dict
from server_stub.services.staff import Role
from tests.helpers.audit import alembic_config, fill, run_verify, sql
from tests.helpers.backend import Backend, BackendFactory
from tests.helpers.staff import new_staff


@pytest.fixture
def cli_backend(make_backend: BackendFactory, monkeypatch: pytest.MonkeyPatch) -> Backend:
    backend = make_backend()
    monkeypatch.setenv("TGFLOW_DATABASE_URL", backend.database_url)
    monkeypatch.setenv("TGFLOW_LOG_LEVEL", "WARNING")
    return backend


# --- breaks -------------------------------------------------------------------------------------


def test_an_intact_log_verifies(cli_backend: Backend, capsys: pytest.CaptureFixture[str]) -> None:
    fill(cli_backend)
    code, out = run_verify(cli_backend, capsys)
    assert code == 0 and "audit log intact: 6 entries, head 6" in out, out


@pytest.mark.parametrize(
    ("tamper", "expected"),
    [
        (
            "UPDATE audit_log SET actor = 'someone-else' WHERE seq = 3",
            "BROKEN at entry 3: entry 3 was altered",
        ),
        ("DELETE FROM audit_log WHERE seq = 3", "BROKEN at entry 3: entry 3 is missing"),
        # Reordered: entries 3 and 4 swap places.
        (
            "UPDATE audit_log SET seq = -1 WHERE seq = 3;"
            "UPDATE audit_log SET seq = 3 WHERE seq = 4;"
            "UPDATE audit_log SET seq = 4 WHERE seq = -1",
            "BROKEN at entry 3: entry 3 was altered",
        ),
        ("DELETE FROM audit_log WHERE seq = 6", "BROKEN at entry 6: entries 6..6 are missing"),
    ],
    ids=["edit", "delete", "reorder", "delete-the-last"],
)
def test_a_tampered_log_is_named_at_its_first_broken_entry(
    cli_backend: Backend, capsys: pytest.CaptureFixture[str], tamper: str, expected: str
) -> None:
    fill(cli_backend)
    cli_backend.services.audit.checkpoint()
    for statement in tamper.split(";"):
        sql(cli_backend, statement)
    code, out = run_verify(cli_backend, capsys)
    assert code == 1 and expected in out, out


def test_a_rewritten_chain_is_caught_by_the_signed_checkpoint(backend: Backend) -> None:
    fill(backend)
    backend.services.audit.checkpoint()
    # The forger edits entry 2 and recomputes every hash after it: the chain links again.
    entries = [entry_dict(e) for e in reversed(backend.services.audit.search(limit=100).entries)]
    entries[1]["details"] = {"n": 99}
    prev = entries[0]["hash"]
    from agent.protocol import audit_entry_hash

    with backend.services.ctx.engine.begin() as conn:
        for entry in entries[1:]:
            entry["prev_hash"] = prev
            prev = entry["hash"] = audit_entry_hash(entry)
            conn.execute(
                text("UPDATE audit_log SET details = :d, prev_hash = :p, hash = :h WHERE seq = :s"),
                {
                    "d": json.dumps(entry["details"]),
                    "p": entry["prev_hash"],
                    "h": entry["hash"],
                    "s": entry["seq"],
                },
            )
    verdict = backend.services.audit.verify()
    assert not verdict.ok and verdict.broken_seq == 6
    assert verdict.reason == "entry 6 differs from its signed checkpoint"


def test_an_edited_checkpoint_is_refused(backend: Backend) -> None:
    fill(backend)
    backend.services.audit.checkpoint()
    sql(backend, "UPDATE audit_checkpoints SET hash = 'ab' WHERE seq = 6")
    verdict = backend.services.audit.verify()
    assert (verdict.ok, verdict.broken_seq) == (False, 6)
    assert "checkpoint 6 was altered" in (verdict.reason or "")


# --- one chain under concurrency ----------------------------------------------------------------


def test_concurrent_appends_keep_one_chain(backend: Backend) -> None:
    threads, each = 8, 10
    barrier = threading.Barrier(threads)
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            barrier.wait()
            for i in range(each):
                backend.services.audit.append(f"writer:{n}", "thing.touch", f"t/{n}/{i}", None)
        except BaseException as exc:  # reported below
            errors.append(exc)

    workers = [threading.Thread(target=writer, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert errors == []
    verdict = backend.services.audit.verify()
    assert verdict.ok, verdict.reason
    assert (verdict.entries, verdict.head_seq) == (threads * each, threads * each)


def test_an_entry_rolls_back_with_its_change(backend: Backend) -> None:
    from server_stub.db import transaction
    from server_stub.services.audit import record

    with pytest.raises(RuntimeError), transaction(backend.services.ctx.write) as session:
        record(session, backend.clock.now(), "test", "thing.touch", "things/x")
        raise RuntimeError("the change failed")
    assert backend.services.audit.count() == 0


# --- checkpoints --------------------------------------------------------------------------------


def test_the_sweeper_signs_a_checkpoint_when_due(make_backend: BackendFactory) -> None:
    backend = make_backend(audit_checkpoint_interval_seconds=600, audit_checkpoint_entries=5)
    audit = backend.services.audit
    fill(backend, 2)
    audit.checkpoint_due()  # the first one is due at once
    assert audit.checkpoint(force=False) is None or audit.verify().unanchored == 0
    fill(backend, 2)
    audit.checkpoint_due()
    assert audit.verify().unanchored == 2  # neither 600 s nor 5 entries yet
    backend.clock.advance(600)
    audit.checkpoint_due()
    assert audit.verify().unanchored == 0
    fill(backend, 5)
    audit.checkpoint_due()  # 5 entries: due without waiting
    verdict = audit.verify()
    assert verdict.ok and verdict.unanchored == 0 and verdict.head_seq == 9


# --- export, verified offline -------------------------------------------------------------------


def test_an_export_verifies_offline_with_the_pinned_key(
    backend: Backend, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    auditor = new_staff(backend.client, backend.services, backend.clock, Role.AUDIT)
    fill(backend)
    r = backend.client.get("/staff/audit/export", headers=auditor.headers)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/x-ndjson")
    lines = r.text.splitlines(keepends=True)
    jwks = backend.client.get("/.well-known/jwks.json").json()
    pins = [
        k.pin for k in backend.services.ctx.keys.published() if k.purpose == KEY_PURPOSE_LICENSE
    ]
    keys = pinned_keys(jwks, pins)
    verdict = verify_export(lines, keys)
    assert verdict.ok, verdict.reason
    count = backend.services.audit.count()
    assert verdict.entries == count  # its own audit.export entry included
    assert json.loads(lines[0])["type"] == "header"

    # An auth key's pin, or no pin at all, trusts nothing.
    auth_pins = [k.pin for k in backend.services.ctx.keys.published() if k.purpose == "auth"]
    assert not verify_export(lines, pinned_keys(jwks, auth_pins)).ok

    # One edited character in an entry.
    edited = list(lines)
    entry = json.loads(edited[3])
    entry["details"]["n"] = 42
    edited[3] = json.dumps(entry) + "\n"
    broken = verify_export(edited, keys)
    assert (broken.ok, broken.broken_seq) == (False, entry["seq"])

    # The command line: 0 for the export, 1 for the edited one.
    export, bad, jwks_file = tmp_path / "a.jsonl", tmp_path / "b.jsonl", tmp_path / "jwks.json"
    export.write_text("".join(lines), encoding="utf-8")
    bad.write_text("".join(edited), encoding="utf-8")
    jwks_file.write_text(json.dumps(jwks), encoding="utf-8")
    argv = ["--jwks", str(jwks_file), "--pin", pins[0]]
    assert verify_main([str(export), *argv]) == 0
    assert verify_main([str(bad), *argv]) == 1
    assert f"BROKEN at entry {entry['seq']}" in capsys.readouterr().err
    # The export itself is audited, by whom.
    (last,) = backend.services.audit.search(action="audit.export").entries
    assert last.actor == f"staff:{auditor.id}"


def test_the_cli_exports_what_the_verifier_accepts(
    cli_backend: Backend, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fill(cli_backend)
    out = tmp_path / "audit.jsonl"
    data = str(cli_backend.settings.data_dir)
    assert cli_main(["audit", "export", "--output", str(out), "--data-dir", data]) == 0
    jwks = cli_backend.services.ctx.keys.jwks()
    pins = [k.pin for k in cli_backend.services.ctx.keys.published()]
    with out.open(encoding="utf-8") as lines:
        verdict = verify_export(lines, pinned_keys(jwks, pins))
    assert verdict.ok and verdict.entries == 7, verdict  # 6 + the CLI's audit.export entry


# --- the marketplace's records move into the log (migration 0006) -------------------------------


def _at_0005(database_url: str) -> Engine:
    engine = db.make_engine(database_url)
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), "0005")
    return engine


def test_the_migration_keeps_the_marketplace_audit(
    database_url: str, make_backend: BackendFactory
) -> None:
    engine = _at_0005(database_url)
    old = [
        (
            "2026-01-02 03:04:05.123456",
            "operator",
            "app.create",
            None,
            "chat",
            None,
            {"name": "Чат"},
        ),
        (
            "2026-01-02 03:04:06",
            "backend:b1",
            "license.request",
            "b1",
            "chat",
            None,
            {"plan": "monthly"},
        ),
        ("2026-01-02 03:04:07", "operator", "backend.create", "b1", None, None, {"name": "Acme"}),
    ]
    try:
        with engine.begin() as conn:
            for at, actor, action, backend_id, app_id, before, after in old:
                conn.execute(
                    text(
                        "INSERT INTO marketplace_audit (at, actor, action, backend_id, app_id,"
                        " before, after) VALUES (:at, :actor, :action, :b, :a, :before, :after)"
                    ),
                    {
                        "at": datetime.fromisoformat(at).replace(tzinfo=UTC)
                        if "postgresql" in database_url
                        else at,
                        "actor": actor,
                        "action": action,
                        "b": backend_id,
                        "a": app_id,
                        "before": json.dumps(before),
                        "after": json.dumps(after),
                    },
                )
        db.upgrade(engine)
    finally:
        engine.dispose()
    backend = make_backend()
    rows = backend.services.marketplace.audit_trail()
    assert [(r.seq, r.actor, r.action, r.backend_id, r.app_id, r.after) for r in rows] == [
        (1, "operator", "app.create", None, "chat", {"name": "Чат"}),
        (2, "backend:b1", "license.request", "b1", "chat", {"plan": "monthly"}),
        (3, "operator", "backend.create", "b1", None, {"name": "Acme"}),
    ]
    assert rows[0].at == datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)
    assert [r.action for r in backend.services.marketplace.audit_trail(backend_id="b1")] == [
        "license.request",
        "backend.create",
    ]
    verdict = backend.services.audit.verify()
    assert verdict.ok and verdict.entries == 3, verdict
    # New entries chain on after the moved ones.
    fill(backend, 1)
    entries = [entry_dict(e) for e in reversed(backend.services.audit.search().entries)]
    assert audit_chain_verdict(entries, {}).ok and entries[-1]["seq"] == 4


def test_the_move_goes_back_down(database_url: str) -> None:
    engine = db.make_engine(database_url)
    try:
        db.upgrade(engine)
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO audit_log (seq, at, actor, action, object, details, prev_hash,"
                    " hash) VALUES (1, :at, 'operator', 'app.create', 'marketplace/app/chat',"
                    " :d, :p, :h)"
                ),
                {
                    "at": datetime(2026, 1, 2, tzinfo=UTC)
                    if "postgresql" in database_url
                    else "2026-01-02 00:00:00",
                    "d": json.dumps({"before": None, "after": {"name": "Chat"}}),
                    "p": "0" * 64,
                    "h": "f" * 64,
                },
            )
            command.downgrade(alembic_config(conn), "0005")
        with engine.connect() as conn:
            row = conn.execute(
                text("SELECT actor, action, app_id, after FROM marketplace_audit")
            ).one()

        def after(value: object) -> object:
            return json.loads(value) if isinstance(value, str) else value

        assert (row[0], row[1], row[2], after(row[3])) == (
            "operator",
            "app.create",
            "chat",
            {"name": "Chat"},
        )
    finally:
        engine.dispose()


def test_the_verify_endpoint_names_the_broken_entry(backend: Backend) -> None:
    auditor = new_staff(backend.client, backend.services, backend.clock, Role.AUDIT)
    fill(backend)
    ok = backend.client.get("/staff/audit/verify", headers=auditor.headers).json()
    assert ok["ok"] and ok["reason"] is None
    head = ok["head_seq"]
    sql(backend, "UPDATE audit_log SET action = 'x' WHERE seq = :seq", seq=head - 1)
    broken = backend.client.get("/staff/audit/verify", headers=auditor.headers).json()
    assert (broken["ok"], broken["broken_seq"]) == (False, head - 1)
    assert broken["reason"] == f"entry {head - 1} was altered: its hash does not match it"
