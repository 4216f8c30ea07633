"""Every benchmark of the project in one run, written up as docs/BENCHMARKS.md (issue #14).

Each benchmark module (``bench/agent.py`` … ``bench/server.py``) exposes ``run(quick) ->
BenchRun`` (bench/harness/figures.py): its own ``main`` run with its defaults, or with its ``QUICK``
arguments for a smoke run; the figures and targets it reports are collected as it prints them.
This runs them one after the other (never two at once: each measures the machine), each in a
process of its own (a benchmark's memory figures are its own process's peak, not what the
benchmarks before it left behind, and nothing one leaves running disturbs the next), then writes
the Markdown: the machine, a table of every target met or not, and one section per benchmark
with its command, its figures against the baselines measured in the same run, and its targets.
A benchmark that fails is reported as such (its targets not met), the others still run.

Usage, from the repository root::

    PYTHONPATH=$PWD .venv/bin/python -m bench.run [--quick] [--only NAME ...] [--out PATH]

``--quick`` is a smoke run (seconds, not minutes: CI runs it through tests/bench/): its figures
mean nothing and the file says so. The history written by hand before this existed is
docs/BENCHMARKS-history.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

from bench import agent, billing, desktop, harness, marketplace, points, portal, server

#: In the order they run and are written: the cheap ones first.
BENCHMARKS: dict[str, ModuleType] = {
    "agent": agent,
    "server": server,
    "marketplace": marketplace,
    "portal": portal,
    "billing": billing,
    "points": points,
    "desktop": desktop,
}
DEFAULT_OUT = harness.REPO / "docs" / "BENCHMARKS.md"
HISTORY = "BENCHMARKS-history.md"


@dataclass(frozen=True)
class Section:
    name: str
    module: ModuleType
    run: harness.BenchRun | None
    #: Why it did not finish (the exception's last line), when it did not.
    error: str | None = None

    @property
    def command(self) -> str:
        argv = self.run.argv if self.run is not None else []
        return " ".join(["PYTHONPATH=$PWD .venv/bin/python -m", f"bench.{self.name}", *argv])

    @property
    def targets(self) -> list[harness.Figure]:
        figures = self.run.figures if self.run is not None else []
        return [f for f in figures if f.met is not None]


def run_one(name: str, module: ModuleType, quick: bool) -> Section:
    """Run one benchmark in a child process (``--child``) and read back what it recorded."""
    print(f"=== bench.{name} {'(quick)' if quick else ''}", flush=True)
    with tempfile.TemporaryDirectory(prefix="tgflow-bench-run-") as tmp:
        result = Path(tmp) / "run.json"
        argv = [sys.executable, "-m", "bench.run", "--child", name, "--json", str(result)]
        done = subprocess.run(
            [*argv, *(["--quick"] if quick else [])], check=False, cwd=harness.REPO
        )
        if not result.is_file():
            return Section(name, module, None, f"the benchmark's process ended {done.returncode}")
        data = json.loads(result.read_text(encoding="utf-8"))
    if "error" in data:
        return Section(name, module, None, data["error"])
    figures = [harness.Figure(**f) for f in data.pop("figures")]
    return Section(name, module, harness.BenchRun(figures=figures, **data))


def run_child(name: str, quick: bool, out: Path) -> int:
    """The child's side of :func:`run_one`: run the benchmark here, write what it recorded."""
    entry: Callable[[bool], harness.BenchRun] = BENCHMARKS[name].run
    try:
        data: dict[str, Any] = asdict(entry(quick))
    except (Exception, SystemExit) as exc:  # one failing benchmark does not stop the others
        traceback.print_exc()
        data = {"error": f"{type(exc).__name__}: {exc}".splitlines()[0]}
    out.write_text(json.dumps(data), encoding="utf-8")
    return 0


def machine() -> list[str]:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = " / ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    return [
        f"- CPU: {cpu}, {os.cpu_count()} logical cores",
        f"- OS: {platform.platform()}",
        f"- Python: {platform.python_version()} ({sys.executable})",
        f"- load average at the start: {load}",
    ]


def _verdict(met: bool | None) -> str:
    return {True: "met", False: "**NOT met**", None: "—"}[met]


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render(
    sections: Sequence[Section], quick: bool, started: datetime, took: float, argv: str
) -> str:
    lines = [
        "# Benchmarks",
        "",
        f"Written by `{argv}` on {started:%Y-%m-%d %H:%M} UTC; the run took {took:.0f} s. Every",
        "benchmark runs in turn on the same machine, each against baselines it measures in the",
        "same run (a ratio is figure / baseline). The notes written by hand per issue before this",
        f"report existed (profiles, what was changed and why) are in [{HISTORY}]({HISTORY}).",
        "",
    ]
    if quick:
        lines += [
            "**A smoke run (`--quick`)**: seconds of load on SQLite only. It shows that every",
            "benchmark runs and reports; its figures and verdicts say nothing about speed.",
            "",
        ]
    lines += ["## Machine", "", *machine(), "", "## Targets", ""]
    lines += ["| benchmark | target | figure | verdict |", "|---|---|---|---|"]
    for s in sections:
        if s.run is None:
            lines.append(f"| {s.name} | (did not finish) | {_cell(s.error or '')} | **NOT met** |")
        for f in s.targets:
            lines.append(
                f"| {s.name} | {_cell(f.target or f.name)} | {_cell(f.shown)} | {_verdict(f.met)} |"
            )
    for s in sections:
        lines += ["", f"## {s.name}", "", (s.module.__doc__ or "").strip().splitlines()[0], ""]
        lines += ["```", s.command, "```", ""]
        if s.run is None:
            lines += [f"Did not finish: `{_cell(s.error or '')}`."]
            continue
        lines += [f"Took {s.run.seconds:.0f} s; exit status {s.run.status}.", ""]
        figures = [f for f in s.run.figures if f.met is None]
        if figures:
            lines += ["| figure | value | baseline (same run) | ratio |", "|---|---|---|---|"]
            for f in figures:
                base = f"{f.baseline:,.2f} {f.unit}" if f.baseline is not None else "—"
                ratio = f"{f.ratio:.2f}x" if f.ratio is not None else "—"
                lines.append(f"| {_cell(f.name)} | {_cell(f.shown)} | {base} | {ratio} |")
            lines.append("")
        lines += ["| target | figure | verdict |", "|---|---|---|"]
        for f in s.targets:
            lines.append(f"| {_cell(f.target or f.name)} | {_cell(f.shown)} | {_verdict(f.met)} |")
    return "\n".join(lines) + "\n"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: seconds, not minutes")
    parser.add_argument(
        "--only", action="append", choices=sorted(BENCHMARKS), metavar="NAME", help="repeatable"
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the Markdown written")
    # Internal: run_one's child process.
    parser.add_argument("--child", choices=sorted(BENCHMARKS), help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        return run_child(args.child, args.quick, args.json)
    started, clock = datetime.now(UTC), time.monotonic()
    names = [n for n in BENCHMARKS if not args.only or n in args.only]
    sections = [run_one(n, BENCHMARKS[n], args.quick) for n in names]
    shown = " ".join(["python -m bench.run", *(sys.argv[1:] if argv is None else argv)])
    text = render(sections, args.quick, started, time.monotonic() - clock, shown)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    every = [f.met for s in sections for f in s.targets] + [s.run is not None for s in sections]
    print(f"wrote {args.out}: {sum(1 for m in every if m)} of {len(every)} targets met")
    return 0 if all(every) else 1


if __name__ == "__main__":
    sys.exit(main())
