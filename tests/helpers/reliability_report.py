"""The reliability suite's report: every scenario says what it tried and what it lost.

A scenario test takes the ``reliability`` fixture (tests/reliability/conftest.py) and calls
``reliability.record(...)`` once its checks have passed. When the whole suite ran (no ``-k`` or
``-m`` selection) and every scenario passed, the session writes docs/RELIABILITY.md from the
rows, so the committed report is always the product of a full, green run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

REPORT: Final = Path(__file__).resolve().parents[2] / "docs" / "RELIABILITY.md"

_HEADER: Final = """# Reliability

Written by the reliability suite (`tests/reliability/`), not by hand: the table is the product of
the last full, green run of `{command}` (CI runs it as part of the whole suite).

Run: {when}; {machine}.

Each row is one scenario: what was done to the system, how much of it, the invariants checked
afterwards, and what was lost.

| scenario | what was tried | checked afterwards | lost |
|---|---|---|---|
"""


@dataclass(frozen=True)
class Row:
    scenario: str
    tried: str
    checked: str
    lost: str


@dataclass
class Report:
    """The rows recorded by this session's scenarios, in the order they ran."""

    rows: list[Row] = field(default_factory=list)

    def record(self, scenario: str, *, tried: str, checked: str, lost: str = "nothing") -> None:
        """Add a scenario's row; call it only after the scenario's assertions have passed."""
        self.rows.append(Row(scenario, tried, checked, lost))

    def render(self, command: str, machine: str, now: datetime | None = None) -> str:
        when = (now or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M UTC")
        text = _HEADER.format(command=command, when=when, machine=machine)
        for row in self.rows:
            cells = (row.scenario, row.tried, row.checked, row.lost)
            text += "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |\n"
        return text

    def write(self, command: str, machine: str, path: Path = REPORT) -> None:
        path.write_text(self.render(command, machine), encoding="utf-8")
