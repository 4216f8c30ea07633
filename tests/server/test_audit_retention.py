"""Audit retention (seed 003: at least 365 days) is kept by never deleting: no code path of the
backend deletes, updates or truncates the audit log or its checkpoints (a walk over the
source), nothing cascades into it, and a year and more of sweeping leaves every entry."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import server_stub
from server_stub.models import AuditCheckpoint, AuditEntry
from tests.helpers.audit import fill
from tests.helpers.backend import Backend

SOURCE = Path(server_stub.__file__).parent
MIGRATIONS = SOURCE / "migrations" / "versions"
_AUDIT_CLASSES = {"AuditEntry", "AuditCheckpoint"}
_AUDIT_SQL = re.compile(
    r"\b(DELETE\s+FROM|UPDATE|TRUNCATE(\s+TABLE)?|DROP\s+TABLE)\s+\"?audit_(log|checkpoints)\b",
    re.IGNORECASE,
)


def _names(node: ast.AST) -> set[str]:
    """The names ``node`` mentions: variables, attributes (``models.AuditEntry``), imports."""
    names: set[str] = set()
    for n in ast.walk(node):
        if isinstance(n, ast.Name):
            names.add(n.id)
        elif isinstance(n, ast.Attribute):
            names.add(n.attr)
        elif isinstance(n, ast.alias):
            names.add(n.asname or n.name)
    return names


def audit_removals(tree: ast.AST) -> list[str]:
    """What in ``tree`` deletes or rewrites audit rows: ``delete(AuditEntry)``,
    ``update(AuditCheckpoint)``, ``AuditEntry.__table__.delete()``, ``session.delete(...)`` in
    a module that uses the audit models, and SQL text aimed at the audit tables."""
    found: list[str] = []
    uses_audit_models = bool(_names(tree) & _AUDIT_CLASSES)
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and _AUDIT_SQL.search(node.value)
        ):
            found.append(f"line {node.lineno}: SQL {node.value.strip()[:60]!r}")
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
        if name not in ("delete", "update", "truncate"):
            continue
        if isinstance(func, ast.Name) and any(_names(a) & _AUDIT_CLASSES for a in node.args):
            found.append(f"line {node.lineno}: {name}() of an audit model")
        elif isinstance(func, ast.Attribute) and _names(func.value) & _AUDIT_CLASSES:
            found.append(f"line {node.lineno}: .{name}() on an audit model")
        elif isinstance(func, ast.Attribute) and name == "delete" and uses_audit_models:
            found.append(f"line {node.lineno}: session.delete() beside the audit models")
    return found


def _upgrades(tree: ast.Module) -> ast.Module:
    """Only the migrations' ``upgrade``: a ``downgrade`` may drop what its upgrade made."""
    body = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "upgrade"]
    return ast.Module(body=list(body), type_ignores=[])


def test_the_walk_finds_what_it_looks_for() -> None:
    """The walk itself can fail: each way of removing an entry is caught."""
    for snippet in (
        "session.execute(delete(AuditEntry).where(AuditEntry.seq < 5))",
        "session.execute(update(AuditCheckpoint).values(jws=''))",
        "conn.execute(AuditEntry.__table__.delete())",
        "conn.execute(text('DELETE FROM audit_log WHERE seq < 5'))",
        "conn.execute(text('truncate table audit_checkpoints'))",
        "from x import AuditEntry\nsession.delete(row)",
    ):
        assert audit_removals(ast.parse(snippet)), snippet
    harmless = "session.execute(delete(StoredEvent)); text('SELECT * FROM audit_log')"
    assert audit_removals(ast.parse(harmless)) == []


def test_no_code_path_deletes_or_rewrites_the_audit_log() -> None:
    offenders: dict[str, list[str]] = {}
    for path in sorted(SOURCE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        if path.parent == MIGRATIONS:
            tree = _upgrades(tree)
        found = audit_removals(tree)
        if found:
            offenders[str(path.relative_to(SOURCE))] = found
    assert offenders == {}


def test_nothing_cascades_into_the_audit_log() -> None:
    for model in (AuditEntry, AuditCheckpoint):
        assert model.__table__.foreign_keys == set(), model  # type: ignore[attr-defined]


@pytest.mark.parametrize("days", [366, 800])
def test_years_of_sweeping_keep_every_entry(backend: Backend, days: int) -> None:
    fill(backend, 5)
    backend.services.audit.checkpoint()
    services = backend.services
    for _ in range(3):
        backend.clock.advance(days * 86400 / 3)
        # The sweeper's rounds (app.py): none of them may take an entry away.
        services.reservations.sweep()
        services.telemetry.purge_expired()
        services.marketplace.settle_due()
        services.audit.checkpoint_due()
    verdict = services.audit.verify()
    assert verdict.ok and verdict.entries == services.audit.count() >= 5
    assert [e.seq for e in services.audit.search(limit=500).entries][-5:] == [5, 4, 3, 2, 1]
