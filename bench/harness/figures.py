"""The figures for ``bench/run.py``: what a benchmark reports is also recorded as :class:`Figure`
objects while :func:`collect` runs its ``main``; each module's ``run(quick)`` is that call."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bench.harness.load import Result


@dataclass(frozen=True)
class Figure:
    """One line of a benchmark's report (bench/run.py writes them into docs/BENCHMARKS.md): a
    figure as printed, the number and unit behind it, the baseline measured in the same run, and
    the target it is held to with its verdict (``met`` ``None``: a figure without a target)."""

    name: str
    shown: str
    value: float | None = None
    unit: str = ""
    baseline: float | None = None
    target: str | None = None
    met: bool | None = None

    @property
    def ratio(self) -> float | None:
        if self.value is None or not self.baseline:
            return None
        return self.value / self.baseline


@dataclass
class BenchRun:
    """What one benchmark's ``run(quick)`` returns: its figures and how it was run."""

    argv: list[str]
    figures: list[Figure]
    seconds: float
    #: The benchmark's exit status (1: a target not met or a request failed).
    status: int


#: The figures recorded since :func:`collect` started (``None``: nobody collects them).
_recorded: list[Figure] | None = None


def record(figure: Figure) -> None:
    if _recorded is not None:
        _recorded.append(figure)


def collect(main: Callable[[list[str]], int], argv: Sequence[str]) -> BenchRun:
    """Run a benchmark's ``main(argv)`` and keep every figure and target it reports."""
    global _recorded
    _recorded = []
    started = time.monotonic()
    try:
        status = main(list(argv))
        return BenchRun(list(argv), _recorded, time.monotonic() - started, status)
    finally:
        _recorded = None


def record_results(results: Sequence[Result], baseline: Result | None) -> None:
    """The load scenarios' throughput, each against the baseline of the same run."""
    for r in results:
        if r is baseline:
            continue
        record(
            Figure(
                r.name,
                f"{r.rate:,.0f} {r.unit}/s, p50 {r.p(50):.2f} ms, p95 {r.p(95):.2f} ms",
                value=r.rate,
                unit=f"{r.unit}/s",
                baseline=baseline.rate if baseline is not None else None,
            )
        )


def record_value(name: str, value: float, unit: str, baseline: float | None = None) -> None:
    """A figure without a target of its own (the targets are :func:`print_targets`')."""
    record(Figure(name, f"{value:,.2f} {unit}", value=value, unit=unit, baseline=baseline))
