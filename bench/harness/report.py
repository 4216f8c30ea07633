"""What a benchmark prints: the scenario table, the targets with their verdicts, and the
disturbance report (how much CPU other processes and the hypervisor's steal took while a scenario
ran, so that a noisy run is flagged as such). Each is also recorded as figures for bench/run.py."""

from __future__ import annotations

from collections.abc import Sequence

from bench.harness.figures import Figure, record, record_results
from bench.harness.load import Result

#: Above this share of a core lost to other work or to steal, a scenario counts as disturbed.
DISTURBED_OTHER_CPU = 0.15


def kib_to_mb(kib: int | None) -> str:
    return f"{kib / 1024:.1f} MB" if kib is not None else "? MB"


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def cpu_share(seconds: float | None, window: float) -> str:
    return f"{seconds / window:.0%}" if seconds is not None else "?"


def cpu_ms_per_request(r: Result) -> float:
    """Server CPU milliseconds per request answered (a pair counts as its two requests)."""
    requests = len(r.sample.request_latencies)
    if r.server_cpu_s is None or not requests:
        return float("nan")
    return r.server_cpu_s / requests * 1000


def print_table(results: dict[str, Result], width: int) -> None:
    """One row per scenario (names padded to ``width``), then the disturbance report."""
    print()
    print(
        f"{'scenario':{width}} {'rate':>12} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'ok':>7} "
        f"{'failed':>6} {'CPU/req ms':>10} {'server CPU':>10} {'other CPU':>9} {'steal':>6}"
    )
    record_results(list(results.values()), results.get("bare"))
    for r in results.values():
        print(
            f"{r.name:{width}} {f'{r.rate:,.0f} {r.unit}/s':>12} {r.p(50):8.2f} {r.p(95):8.2f} "
            f"{r.p(99):8.2f} {r.sample.ok:7d} {r.sample.failed:6d} {cpu_ms_per_request(r):10.3f} "
            f"{cpu_share(r.server_cpu_s, r.seconds):>10} {cpu_share(r.other_cpu_s, r.seconds):>9} "
            f"{cpu_share(r.steal_s, r.seconds):>6}"
        )
        if r.sample.errors:
            print(f"{'':{width}} errors: {r.sample.errors}")
    print_disturbance(list(results.values()))


def print_disturbance(results: Sequence[Result]) -> None:
    """Explain the CPU columns and warn when other work or steal disturbed a scenario."""
    print(
        "CPU columns: share of one core (100% = one core busy for the whole window). 'other' is\n"
        "everything else on this machine; 'steal' is time the hypervisor gave to other guests."
    )
    busiest = max(r.disturbance for r in results)
    if busiest > DISTURBED_OTHER_CPU:
        print(
            f"WARNING: other work or steal took up to {busiest:.0%} of a core during a scenario; "
            "the figures are disturbed, run again on a quiet machine."
        )


def print_targets(checks: Sequence[tuple[str, bool, str]], failures: Sequence[str]) -> bool:
    """Print each target as met or not with its figure, and where requests failed; True when
    every target is met and nothing failed."""
    print()
    print("targets:")
    for label, ok, figure in checks:
        print(f"  {label}: {verdict(ok)} ({figure})")
        record(Figure(label, figure, target=label, met=ok))
    if failures:
        print(f"  requests failed in {', '.join(failures)}: those figures are not trustworthy")
    shown = f"failed in {', '.join(failures)}" if failures else "none failed"
    record(Figure("every request answered", shown, target="no request fails", met=not failures))
    return all(ok for _, ok, _ in checks) and not failures
