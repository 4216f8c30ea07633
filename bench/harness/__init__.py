"""The benchmarks' shared plumbing: HTTP client, load driver, processes, CPU-disturbance report.

Every benchmark (``bench/server.py``, ``agent.py``, ``marketplace.py``, ``portal.py``,
``billing.py``, ``points.py``, ``desktop.py``) imports it as ``bench.harness``; run them as modules
from the repository root (``python -m bench.server``), or all at once with ``python -m bench.run``.
This module only re-exports; each part has its own module:

- :mod:`.client`: a minimal keep-alive HTTP/1.1 client over asyncio streams (it costs far less
  CPU than the servers it measures) and the request builders;
- :mod:`.load`: the load driver: N connections, each running one operation in a loop for a fixed
  time, spread round-robin over one or several server ports, with latencies, failures, the
  servers' CPU and RSS (a server is its process and all its children: ``--workers`` forks);
- :mod:`.procfs`: ``/proc`` readings (CPU, RSS, process trees, the machine's busy and steal time);
- :mod:`.servers`: free ports, ``tgflow-server`` subprocesses (started, stopped), the bare
  FastAPI baseline (``python -m bench.harness --serve-bare PORT``);
- :mod:`.seeding`: a run's work dir and environment, the seeded user and plan, a login, a
  throwaway PostgreSQL database;
- :mod:`.report`: the scenario table, the targets and the disturbance report: how much CPU other
  processes and the hypervisor (steal) took while a scenario ran, so that a noisy run is flagged
  as such;
- :mod:`.figures`: the figures for ``bench/run.py``: what a benchmark prints through
  :func:`print_table`, :func:`print_targets` and :func:`record_value` is also recorded as
  :class:`Figure` objects while :func:`collect` runs its ``main``; each module's ``run(quick)``
  is that call;
- :mod:`.options`: the command-line options every load benchmark takes.
"""

from __future__ import annotations

from bench.harness.client import HOST, Connection, HttpError, get_request, post_request
from bench.harness.figures import (
    BenchRun,
    Figure,
    collect,
    record,
    record_results,
    record_value,
)
from bench.harness.load import (
    MAX_OPS_PER_SECOND_PER_CONN,
    REQUEST_TIMEOUT_S,
    Operation,
    Result,
    Sample,
    measured,
    percentile,
    request_series,
    run_loop,
    run_scenario,
    single_get,
    timed,
)
from bench.harness.options import (
    DEFAULT_POSTGRES,
    LOAD_OPTIONS_RULE,
    QUICK_LOAD,
    add_load_options,
    load_options_valid,
)
from bench.harness.procfs import (
    machine_cpu_times,
    proc_status_kb,
    process_cpu_seconds,
    process_tree,
    processes_cpu_seconds,
)
from bench.harness.report import (
    DISTURBED_OTHER_CPU,
    cpu_ms_per_request,
    cpu_share,
    kib_to_mb,
    print_disturbance,
    print_table,
    print_targets,
    verdict,
)
from bench.harness.seeding import (
    EMAIL,
    FINGERPRINT,
    PLAN,
    login,
    postgres_database,
    prepare_run,
    run_cli,
    seed,
)
from bench.harness.servers import (
    READY_TIMEOUT_S,
    REPO,
    SERVER_CLI,
    STOP_TIMEOUT_S,
    Server,
    free_port,
    measure_bare,
    serve_bare,
    start_bare,
    start_real,
    start_server,
    start_servers,
    wait_ready,
)

__all__ = [
    "DEFAULT_POSTGRES",
    "DISTURBED_OTHER_CPU",
    "EMAIL",
    "FINGERPRINT",
    "HOST",
    "LOAD_OPTIONS_RULE",
    "MAX_OPS_PER_SECOND_PER_CONN",
    "PLAN",
    "QUICK_LOAD",
    "READY_TIMEOUT_S",
    "REPO",
    "REQUEST_TIMEOUT_S",
    "SERVER_CLI",
    "STOP_TIMEOUT_S",
    "BenchRun",
    "Connection",
    "Figure",
    "HttpError",
    "Operation",
    "Result",
    "Sample",
    "Server",
    "add_load_options",
    "collect",
    "cpu_ms_per_request",
    "cpu_share",
    "free_port",
    "get_request",
    "kib_to_mb",
    "load_options_valid",
    "login",
    "machine_cpu_times",
    "measure_bare",
    "measured",
    "percentile",
    "post_request",
    "postgres_database",
    "prepare_run",
    "print_disturbance",
    "print_table",
    "print_targets",
    "proc_status_kb",
    "process_cpu_seconds",
    "process_tree",
    "processes_cpu_seconds",
    "record",
    "record_results",
    "record_value",
    "request_series",
    "run_cli",
    "run_loop",
    "run_scenario",
    "seed",
    "serve_bare",
    "single_get",
    "start_bare",
    "start_real",
    "start_server",
    "start_servers",
    "timed",
    "verdict",
    "wait_ready",
]
