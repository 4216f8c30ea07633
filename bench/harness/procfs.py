"""``/proc`` readings: CPU time and RSS of processes and their children, and the machine's busy
and steal time."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from pathlib import Path


def proc_status_kb(pid: int, key: str) -> int | None:
    try:
        text = Path(f"/proc/{pid}/status").read_text(encoding="ascii")
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1])
    return None


def machine_cpu_times() -> tuple[float, float] | None:
    """(busy, steal) CPU seconds of all cores since boot, from ``/proc/stat``.

    ``busy`` is the time this machine ran anything; ``steal`` the time a virtual machine wanted
    to run but the hypervisor ran another guest, which slows everything here down.
    """
    try:
        first = Path("/proc/stat").read_text(encoding="ascii").splitlines()[0]
    except OSError:
        return None
    # user nice system idle iowait irq softirq steal (guest time is already counted in user)
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in first.split()[1:9])
    tick = os.sysconf("SC_CLK_TCK")
    return (user + nice + system + irq + softirq) / tick, steal / tick


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of ``pid`` and its threads, from ``/proc/<pid>/stat``."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (uvicorn's ``--workers`` are children of a supervisor)."""
    found = [pid]
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError, ValueError):
            for child in (task / "children").read_text(encoding="ascii").split():
                found.extend(process_tree(int(child)))
    return found


def processes_cpu_seconds(pids: Sequence[int]) -> float | None:
    """Summed user + system CPU time of ``pids`` (None when one of them cannot be read)."""
    total = 0.0
    for pid in pids:
        used = process_cpu_seconds(pid)
        if used is None:
            return None
        total += used
    return total
