"""``bench/run.py --quick`` runs every benchmark and writes a report with each one's section and a
verdict for each of its targets: the plumbing of docs/BENCHMARKS.md, not its figures (a smoke
run's figures mean nothing)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from bench.run import BENCHMARKS

REPO = Path(__file__).resolve().parents[2]


def test_a_quick_run_reports_every_benchmark_and_a_verdict_per_target(tmp_path: Path) -> None:
    out = tmp_path / "BENCHMARKS.md"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TGFLOW_")}
    env |= {"PYTHONPATH": str(REPO), "QT_QPA_PLATFORM": "offscreen"}
    done = subprocess.run(
        [sys.executable, "-m", "bench.run", "--quick", "--out", str(out)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert out.exists(), done.stdout[-3000:] + done.stderr[-3000:]
    report = out.read_text(encoding="utf-8")
    assert "Did not finish" not in report, report
    assert "**A smoke run (`--quick`)**" in report
    summary, _, sections = report.partition("\n## agent\n")
    for name, module in BENCHMARKS.items():
        section = sections if name == "agent" else report.partition(f"\n## {name}\n")[2]
        assert section, f"no section for {name}"
        body = section.split("\n## ", 1)[0]
        assert f"python -m bench.{name} " in body
        quick = " ".join(module.QUICK)
        assert quick in body, f"{name}'s command is not its quick run"
        rows = re.findall(r"^\| (.+) \| (met|\*\*NOT met\*\*) \|$", body, re.MULTILINE)
        assert len(rows) >= 2, f"{name} reports no target with a verdict"
        summary_rows = re.findall(
            rf"^\| {name} \| .+ \| (met|\*\*NOT met\*\*) \|$", summary, re.MULTILINE
        )
        assert len(summary_rows) == len(rows), f"{name}'s targets are not all in the summary"
    # Its exit status says whether every target was met: a smoke run may miss some.
    assert done.returncode in (0, 1), done.stderr[-3000:]
